"""The ``sensorwatch`` command line (``sensorwatch --help``)."""

from sensorwatch.pipeline.cli.app import app, main

__all__ = ["app", "main"]
