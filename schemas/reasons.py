"""How a rejection reason shows what it names, in one line: a value's JSON type, text clipped, a
channel name quoted when it is not plain, a list of names cut short, a duration, a non-finite
number. Only a message that is refused gets here."""

from __future__ import annotations

_JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    list: "list",
    dict: "object",
}


def span(ms: int) -> str:
    """A duration in whole days or hours when it spans two or more, else in seconds: '150 days', '301.5 s'."""
    for unit, size in (("days", 86_400_000), ("h", 3_600_000)):
        if ms >= 2 * size:
            return f"{ms // size} {unit}"
    return f"{ms / 1000:g} s"


def nonfinite(value: float) -> str:
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def clip(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_name(name: str) -> str:
    """A channel name fit for a one-line reason: as it is when plain, quoted otherwise."""
    return name if name.isprintable() and len(name) <= 64 and "." not in name else repr(clip(name))


def name_list(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(clip(name)) for name in names[:shown]) + more
