"""Stream processing without Kafka: windows, the batch step, decisions and per-asset state."""
