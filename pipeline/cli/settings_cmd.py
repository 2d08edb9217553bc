"""``sensorwatch settings``: every setting as the commands would read it, with where it came from.

Secrets never show: a ``SecretStr`` that is set reads ``**********``, and so does a password
written into a URI or a server list:

>>> mask("postgresql://scorer:s3cret@db:5432/mlflow")
'postgresql://scorer:**********@db:5432/mlflow'
>>> mask("user:pw@kafka-1:9092,kafka-2:9092")
'user:**********@kafka-1:9092,kafka-2:9092'
>>> mask("http://mlflow:5000")
'http://mlflow:5000'
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import typer

from sensorwatch.models.recipe import RECIPE_FIELDS
from sensorwatch.pipeline.cli.options import (
    LogFormat,
    Servers,
    Tracking,
    env_name,
    job_settings,
    recipe_options,
)
from sensorwatch.pipeline.settings import Settings

HIDDEN = "**********"
# user:password@ after a scheme's "//", the start of the text, or a list separator; the password
# runs to the last "@" before the host (an unencoded "@" in it is hidden too).
_USERINFO = re.compile(r"(?P<user>(?:^|://|[,;\s])[^:/@,;\s]*):(?P<password>[^/,;\s]+)@")


def mask(text: str) -> str:
    """``text`` with the password of every ``user:password@`` in it hidden."""
    return _USERINFO.sub(lambda m: f"{m['user']}:{HIDDEN}@", text)


@recipe_options
def settings(
    output: Annotated[
        Literal["text", "env", "json"],
        typer.Option(
            "--format",
            help="text: name = value, its variable and source; env: lines for a .env file; json: one object.",
        ),
    ] = "text",
    bootstrap_servers: Servers = None,
    tracking_uri: Tracking = None,
    log_format: LogFormat = None,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Print the effective settings (defaults, then .env, environment and flags), secrets masked."""
    flags = {
        "bootstrap_servers": bootstrap_servers,
        "tracking_uri": tracking_uri,
        "log_format": log_format,
        **(recipe or {}),
    }
    current = job_settings(**flags)
    values = effective(current)
    if output == "json":
        typer.echo(json.dumps(values, indent=2))
        return
    if output == "env":
        typer.echo("\n".join(_env_line(name, value) for name, value in values.items()))
        return
    sources = _sources(current, {name for name, value in flags.items() if value is not None})
    lines = {name: f"{name} = {_shown(value)}" for name, value in values.items()}
    width = min(max(len(line) for line in lines.values()), 64)
    for name, line in lines.items():
        typer.echo(f"{line:<{width}}  # {env_name(name)} ({sources[name]})")


def effective(current: Settings) -> dict[str, Any]:
    """Every setting's value as JSON holds it, the service's own first, then the recipe's as the
    preset and the fields set on top make it; secrets masked."""
    from pydantic import SecretStr
    from pydantic_core import to_jsonable_python

    recipe = current.recipe()
    names = [n for n in Settings.model_fields if n not in RECIPE_FIELDS] + list(
        type(recipe).model_fields
    )
    values: dict[str, Any] = {}
    for name in names:
        value = getattr(recipe if name in RECIPE_FIELDS else current, name)
        if isinstance(value, SecretStr):
            value = HIDDEN
        value = to_jsonable_python(value)
        values[name] = mask(value) if isinstance(value, str) else value
    return values


def _sources(current: Settings, flags: set[str]) -> dict[str, str]:
    """Where each value came from: a flag, the environment, .env, the preset, or the default."""
    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

    environment, dotenv = EnvSettingsSource(Settings)(), DotEnvSettingsSource(Settings)()
    preset = f"preset {current.preset}" if current.preset != "default" else "default"

    def source(name: str) -> str:
        if name in flags:
            return "flag"
        if name in environment:
            return "environment"
        if name in dotenv:
            return ".env"
        return preset if name in RECIPE_FIELDS else "default"

    return {name: source(name) for name in Settings.model_fields}


def _text(value: Any) -> str:
    """As a .env file or the environment holds it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _shown(value: Any) -> str:
    return "(not set)" if value is None else '""' if value == "" else _text(value)


def _env_line(name: str, value: Any) -> str:
    """A .env line; a setting that is unset or masked is a comment, so pasting it sets nothing wrong."""
    if value is None:
        return f"# {env_name(name)} is not set"
    text = _text(value)
    if HIDDEN in text:
        return f"# {env_name(name)}={text}  (masked)"
    if text != text.strip() or text.startswith(("'", '"')) or " #" in text or "\n" in text:
        text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{env_name(name)}={text}"
