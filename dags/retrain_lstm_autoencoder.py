"""Retrain the LSTM autoencoder on what the service archived: validate → train → evaluate → promote
→ tune.

Each task is a thin call of a plain function in ``sensorwatch.pipeline.jobs`` (``retrain``,
``gate``) or ``sensorwatch.pipeline.review.feedback`` (``tune``); the tests call the same
functions. Training starts from the champion's own recipe (a run's conf ``{"preset": NAME}`` chooses another,
recorded on the version) and leaves out the readings of anomalies reviewed as confirmed; the gate
scores both versions on the held-out day with synthetic faults injected (recall without labels),
on the labelled events and on the reviewed anomalies; the last task tunes the champion's
threshold scale from them. The schedule, the lookback and the promotion mode are sensorwatch settings
(``SENSORWATCH_RETRAIN_SCHEDULE``, ``…_RETRAIN_LOOKBACK_DAYS``, ``…_PROMOTION_MODE``).
Parsing this file imports Airflow and the settings only: no Keras, MLflow or pandas.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task

from sensorwatch.pipeline.settings import Settings

DAG_ID = "retrain_lstm_autoencoder"


def _logical_day() -> str:
    """The run's logical date (a manual run may have none: then the end of its data interval, or today)."""
    context = get_current_context()
    moment = context.get("logical_date") or context.get("data_interval_end") or datetime.now(UTC)
    return moment.date().isoformat()


@dag(
    dag_id=DAG_ID,
    schedule=Settings().retrain_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["sensorwatch"],
    doc_md=__doc__,
)
def retrain_lstm_autoencoder() -> None:
    @task
    def validate() -> str:
        """Great Expectations on the archived training days; a failure names each expectation."""
        from sensorwatch.pipeline.jobs import retrain

        day = _logical_day()
        print(retrain.validate(Settings(), day).summary())
        return day

    @task
    def train(day: str) -> str:
        """A new version on the archive (the held-out day excluded), with the champion's recipe
        (or the preset a manual run's conf names: ``{"preset": "plant"}``); the same one on a
        rerun."""
        from sensorwatch.pipeline.jobs import retrain

        run = get_current_context().get("dag_run")
        preset = ((run.conf if run is not None else None) or {}).get("preset")
        return retrain.train(Settings(), day, preset=preset)

    @task
    def evaluate(day: str, version: str) -> dict:
        """Champion and challenger on the held-out day, the labelled events and the reviewed anomalies."""
        from sensorwatch.pipeline.jobs import gate

        return gate.evaluate(Settings(), day, version)

    @task
    def promote(version: str, verdict: dict) -> bool:
        """Managed: move the champion alias when the gate says better; manual: tag the challenger."""
        from sensorwatch.pipeline.jobs import retrain

        return retrain.promote(Settings(), version, verdict)

    @task
    def tune(promoted: bool) -> float:
        """The champion's threshold scale from its reviewed anomalies (applied when managed)."""
        from sensorwatch.pipeline.review import feedback

        settings = Settings()
        done = feedback.tune(
            settings, apply=settings.promotion_mode == "managed", by="retraining DAG"
        )
        return done.tuning.scale

    day = validate()
    version = train(day)
    tune(promote(version, evaluate(day, version)))


retrain_lstm_autoencoder()
