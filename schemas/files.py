"""The JSON Schema files of the messages, read from the installed package, and their validators.

The files are the contract for producers and consumers outside this project; inside it they
check what is not on the hot path (decoded anomaly events, tests, sample data).

>>> load_schema("reading")["title"]
'Sensor reading'
>>> schema_validator("reading").is_valid({"asset_id": "pump-7", "ts": 0, "values": {"flow": 1.0}})
True
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_NAMES = ("reading", "anomaly")

# jsonschema checks "date-time" only when an optional extra package is installed, so this
# checker brings its own: RFC 3339 shape by pattern, calendar validity by datetime.
FORMAT_CHECKER = FormatChecker()
_RFC3339 = re.compile(
    "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def is_date_time(instance: object) -> bool:
    """Whether ``instance`` is an RFC 3339 date-time (formats say nothing about non-strings).

    >>> is_date_time("2024-05-01T12:00:00.120Z"), is_date_time("2024-05-01 12:00:00")
    (True, False)
    """
    if not isinstance(instance, str):
        return True
    if _RFC3339.fullmatch(instance) is None:
        return False
    datetime.fromisoformat(instance.upper())  # raises on impossible dates such as 02-30
    return True


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (``"reading"`` or ``"anomaly"``) as a fresh dict."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = (
        resources.files("sensorwatch.schemas")
        .joinpath(f"{name}.schema.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


@cache
def schema_validator(name: str) -> Draft202012Validator:
    """A Draft 2020-12 validator for the schema ``name`` that also asserts formats (date-time)."""
    return Draft202012Validator(load_schema(name), format_checker=FORMAT_CHECKER)
