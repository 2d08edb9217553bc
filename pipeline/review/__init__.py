"""Review of flagged anomalies in MLflow: the service's sink that logs them, the verdicts people
set on them (in MLflow's UI or with ``sensorwatch review``), and the plots they judge them by.

The layout in MLflow (``runs``): experiment ``sensorwatch-anomalies``; a parent run per model
version and day holding that day's table; under it, one run per alarm, whose ``verdict`` tag is
the review queue's state.
"""
