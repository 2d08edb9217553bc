"""The streaming side of sensorwatch: Kafka in and out, windows, the service loop, the CLI."""
