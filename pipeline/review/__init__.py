"""Review of flagged anomalies in MLflow, in one place: the service's sink that logs them, the
verdicts people set on them (in MLflow's UI or with ``sensorwatch review``), the plots they judge
them by, and what the verdicts teach (``spans``: training data, the gate's reviewed figures;
``feedback``: the threshold scale that ``tuning`` computes).

The layout in MLflow (``runs``): experiment ``sensorwatch-anomalies``; a parent run per model
version and day holding that day's table; under it, one run per alarm, whose ``verdict`` tag is
the review queue's state.
"""
