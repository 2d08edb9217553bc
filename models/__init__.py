"""The LSTM autoencoder, its training, batched scoring, thresholds and the MLflow registry.

Nothing here knows about Kafka: ``pipeline`` feeds windows in and decides what to publish.
"""
