"""Sensor data files: SKAB's `;` format and plain CSV with a time column."""
