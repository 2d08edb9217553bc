"""Watch for drift: when the recent window scores left the champion's calibration, retrain.

Every ``SENSORWATCH_DRIFT_SCHEDULE`` the recent archived window scores are tested against the
champion's validation scores (``sensorwatch.pipeline.jobs.drift``); when they are less likely than
``SENSORWATCH_DRIFT_ALPHA`` (the false-alarm rate of one check), the retraining DAG is triggered.
Otherwise, or when the check could not tell (it says why), the trigger is skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from sensorwatch.pipeline.settings import Settings

DAG_ID = "sensorwatch_drift_check"


@dag(
    dag_id=DAG_ID,
    schedule=Settings().drift_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["sensorwatch"],
    doc_md=__doc__,
)
def sensorwatch_drift_check() -> None:
    @task.short_circuit
    def drifted() -> bool:
        """True (and the trigger runs) when the recent scores drifted."""
        from sensorwatch.pipeline.jobs.drift import drift

        context = get_current_context()
        until = context.get("data_interval_end") or context.get("logical_date")
        found = drift(Settings(), now_ms=int(until.timestamp() * 1000) if until else None)
        print({0: "no drift: ", 1: "drift: ", 2: "could not tell: "}[found.exit_code] + found.why)
        return found.drifted is True

    drifted() >> TriggerDagRunOperator(task_id="retrain", trigger_dag_id="retrain_lstm_autoencoder")


sensorwatch_drift_check()
