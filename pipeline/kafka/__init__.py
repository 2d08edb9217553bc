"""Kafka I/O: clients, the readings source, the output sinks, the changelog, reach and login."""
