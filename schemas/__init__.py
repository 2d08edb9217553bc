"""Message schemas of sensorwatch: the reading, the anomaly event, and their fast validators.

The JSON Schema files beside this module are the contract for other producers and consumers;
``schemas.readings`` checks the same rules on the hot path without a generic schema engine.
"""

from sensorwatch.schemas.records import AnomalyEvent, Reading, Rejected

__all__ = ["AnomalyEvent", "Reading", "Rejected"]
