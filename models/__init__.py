"""The LSTM autoencoder, its recipe and training, batched scoring, thresholds, alarm rules,
detection metrics and the MLflow registry.

Nothing here knows about Kafka: ``sensorwatch.pipeline`` feeds windows in and decides what to
publish. Importing this package (or the recipe, thresholds, alarms or metrics) loads no Keras:
the modules that build, train or run a model import it through ``sensorwatch.models.backend``.
"""
