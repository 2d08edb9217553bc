"""Run one DAG of ``dags/`` with Airflow's ``dag.test()`` for a logical date; print the task states
as JSON on the last line. The tests run it in a process of its own: Airflow configures logging and
its database for the whole process, which should not leak into the other tests.

    python tests/airflow_run.py DAG_ID YYYY-MM-DD
"""

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

dag_id, day = sys.argv[1], sys.argv[2]
began = time.monotonic()
bag = DagBag(dag_folder=str(Path(__file__).resolve().parent.parent / "dags"))
assert not bag.import_errors, bag.import_errors
run = bag.dags[dag_id].test(logical_date=datetime.fromisoformat(day).replace(tzinfo=UTC))
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print(
    json.dumps(
        {"state": str(run.state), "tasks": states, "seconds": round(time.monotonic() - began, 1)}
    )
)
