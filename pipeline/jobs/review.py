"""Review in MLflow: the anomalies a model version flagged, as a table on that version's run."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from sensorwatch.models.registry import Store
from sensorwatch.schemas.records import AnomalyEvent


def events_frame(events: Sequence[AnomalyEvent]) -> pd.DataFrame:
    """One row per event, with the channel contributions as columns."""
    rows = []
    for e in events:
        row = {k: v for k, v in e.to_dict().items() if k != "contributions"}
        row.update({f"share_{c}": v for c, v in e.contributions.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def log_events(store: Store, run_id: str, events: Sequence[AnomalyEvent], name: str = "anomalies.json") -> None:
    """Attach flagged anomalies to a run: MLflow's UI shows them under the run's artifacts and
    in its evaluation view, beside the model version that flagged them."""
    from sensorwatch.models.registry import mlflow_for

    if not events:
        return
    mlflow = mlflow_for(store, writing=True)
    mlflow.log_table(events_frame(events), artifact_file=name, run_id=run_id)
