"""The running service: start-up, the poll loop, checkpoints, reload, health and metrics."""
