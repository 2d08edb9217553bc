"""Log records as JSON lines, for log shippers (``--log-format json``, ``SENSORWATCH_LOG_FORMAT``).

One object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then
``exception`` (its traceback) when there is one, and every field given as ``extra``:

>>> import logging
>>> record = logging.makeLogRecord({"name": "sensorwatch.pipeline", "levelname": "WARNING",
...     "msg": "late reading asset=%s", "args": ("pump-01",), "created": 0.0, "partition": 3})
>>> print(JsonFormatter().format(record))
{"time": "1970-01-01T00:00:00.000Z", "level": "WARNING", "logger": "sensorwatch.pipeline", "message": "late reading asset=pump-01", "partition": 3}
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# What every record holds: anything else on it came from ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a value JSON cannot hold is written as its ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line.setdefault(key, value)  # an extra named like a key above does not replace it
        return json.dumps(line, default=str, ensure_ascii=False)
