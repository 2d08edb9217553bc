"""Log records as JSON lines, for log shippers (``--log-format json``, ``SENSORWATCH_LOG_FORMAT``),
written by python-json-logger.

One object per record: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
then ``exception`` (its traceback) when there is one, and every field given as ``extra``; a value
JSON cannot hold is written as its ``str``:

>>> import logging
>>> record = logging.makeLogRecord({"name": "sensorwatch.pipeline", "levelname": "WARNING",
...     "msg": "late reading asset=%s", "args": ("pump-01",), "created": 0.0, "msecs": 0.0, "partition": 3})
>>> print(JsonFormatter().format(record))
{"time": "1970-01-01T00:00:00.000Z", "level": "WARNING", "logger": "sensorwatch.pipeline", "message": "late reading asset=pump-01", "partition": 3}
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryFormatter

# The record's own fields, under the names log shippers expect.
RENAMED = {
    "asctime": "time",
    "levelname": "level",
    "name": "logger",
    "exc_info": "exception",
    "stack_info": "stack",
}
OWN = ("asctime", "levelname", "name", "message")


class JsonFormatter(_LibraryFormatter):
    """One JSON object per line, the time in UTC."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__(
            "".join(f"{{{f}}}" for f in OWN),
            style="{",
            rename_fields=RENAMED,
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        # An extra named like one of the record's own fields (``level``, ``exception``) does not replace it.
        for field in OWN:
            log_data[RENAMED.get(field, field)] = getattr(record, field)
        for field, value in message_dict.items():  # the traceback and stack, as formatted
            log_data[RENAMED.get(field, field)] = value
