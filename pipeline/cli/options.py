"""What the commands share: settings from flags, common options, logging, and the recipe options.

``recipe_options`` gives a command one option per field of the detector recipe (and ``--preset``),
generated from ``Recipe`` itself, so ``train``, ``serve``, ``detect`` and ``evaluate`` accept the
same options with the same help, and a new recipe field needs no CLI change. ``log_format_option``
gives every command ``--log-format`` the same way (the command line adds it to each).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from sensorwatch.models.presets import PRESETS
from sensorwatch.models.recipe import Recipe
from sensorwatch.pipeline.cli.logs import log_as
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.settings import Settings

Servers = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka bootstrap servers (default: SENSORWATCH_BOOTSTRAP_SERVERS).",
    ),
]
Tracking = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")]
LogFormat = Annotated[
    Literal["text", "json"] | None,
    typer.Option(
        "--log-format",
        show_default=False,
        help="Log records as text, or as one JSON object per line for log shippers (default: SENSORWATCH_LOG_FORMAT).",
    ),
]
# The same names as sensorwatch.pipeline.data.times.TIME_UNITS (a test holds them equal): that
# module brings pandas, which the command line does not load before a command runs.
TimeUnit = Annotated[
    Literal["s", "ms", "us", "ns"] | None,
    typer.Option(
        "--time-unit",
        show_default=False,
        help="Unit of a numeric time column (default: told from its magnitude, epoch times of 1973-2100).",
    ),
]
TimeZone = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        show_default=False,
        help="Time zone of text times without a UTC offset, e.g. Europe/Berlin (default: UTC); "
        "the hour a clock change repeats is then no repeat. Times with an offset keep it.",
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse a CSV whose times repeat or go back, instead of sorting it and keeping the "
        "first row of each time.",
    ),
]
RetrainEvery = Annotated[
    int,
    typer.Option(
        "--retrain-every",
        min=0,
        help="Retrain every N decided rows on as many trailing rows as the first training had, "
        "without the short alarms, as a scheduled retrain would (0: never).",
    ),
]
RECIPE_PANEL = "Detector recipe (default: the preset's; see README, Settings)"


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    given = {k: v for k, v in {**_shared_flags, **overrides}.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise UserError(_invalid(exc.errors()[0], given)) from None
    except SettingsError as exc:  # a value in the environment or .env that is not even parsed
        raise UserError(_unparsed(exc)) from None
    log_as(settings.log_format)  # a command may set up logging before it reads its settings
    return settings


def job_settings(**overrides: Any) -> Settings:
    """``settings_from``, with the recipe's threshold parameters checked before any work starts."""
    from sensorwatch.models.thresholds import check_params

    settings = settings_from(**overrides)
    recipe = settings.recipe()  # another method than the preset's starts from its own defaults
    try:
        check_params(recipe.threshold, recipe.threshold_params)
    except ValueError as exc:
        raise UserError(f"threshold-params: {exc}") from None
    return settings


def env_name(field: str) -> str:
    """The variable a setting reads: ``SENSORWATCH_<FIELD>``."""
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _invalid(err: Any, given: dict[str, Any]) -> str:
    """One line for a validation error: the flag's name, or the variable's when the value came from
    the environment (or .env), with what it holds."""
    loc = [str(part) for part in err["loc"]] or ["settings"]
    field, inner = loc[0], "".join(f"{part}: " for part in loc[1:])
    # A validator's own message, without pydantic's "Value error, " before it.
    msg = (
        str(err["ctx"]["error"])
        if err["type"] == "value_error" and "error" in err.get("ctx", {})
        else err["msg"]
    )
    if field in given or field not in Settings.model_fields:
        return f"{field.replace('_', '-')}: {inner}{msg}"
    value = err.get("input")
    shown = (
        f" (it holds {value!r})"
        if isinstance(value, str) and len(value) <= 80 and repr(value) not in msg
        else ""
    )
    return f"{env_name(field)}: {inner}{msg}{shown}"


def _unparsed(exc: Exception) -> str:
    found = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
    if not found:
        return f"settings: {exc}"
    field, source = found.groups()
    where = " in .env" if source.startswith("DotEnv") else ""
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        text = cause.doc if len(cause.doc) <= 80 else cause.doc[:77] + "..."
        why = f"not JSON ({cause.msg}): {text!r}"
    else:
        why = str(cause or exc).splitlines()[0]
    return f"{env_name(field)}{where}: {why}"


def need_servers(settings: Settings) -> Settings:
    if not settings.bootstrap_servers:
        raise UserError(
            "no Kafka to talk to: pass --bootstrap-servers or set SENSORWATCH_BOOTSTRAP_SERVERS "
            "(`sensorwatch broker` starts one on this machine)"
        )
    return settings


# Flags every command takes (``log_format_option``): settings_from puts them under the command's own.
_shared_flags: dict[str, Any] = {}


def log_format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--log-format`` to ``command``; given, it overrides ``SENSORWATCH_LOG_FORMAT`` in the
    settings the command reads, and so the format of its log records."""
    extra = inspect.Parameter(
        "log_format", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=LogFormat
    )

    @functools.wraps(command)
    def wrapper(*args: Any, log_format: str | None = None, **kwargs: Any) -> Any:
        _shared_flags.update(log_format=log_format)
        try:
            return command(*args, **kwargs)
        finally:
            _shared_flags.clear()

    return _signed(wrapper, [*inspect.signature(command, eval_str=True).parameters.values(), extra])


def _signed(wrapper: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[..., Any]:
    """``wrapper`` with ``params`` as its signature and type hints, which Typer reads (evaluated)."""
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # type: ignore[attr-defined]
    return wrapper


def _option_type(annotation: Any) -> type:
    """The click-friendly type of a recipe field: its number type, or text (parsed by the settings)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    return annotation if annotation in (int, float) else str


def _json_fields() -> set[str]:
    return {
        name for name, f in Recipe.model_fields.items() if typing.get_origin(f.annotation) is dict
    }


def recipe_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--preset`` and one option per recipe field to ``command``; it receives the ones given
    as ``recipe`` (a dict of field → value, ready for ``settings_from``)."""
    names = ["preset", *Recipe.model_fields]
    extra = [
        inspect.Parameter(
            "preset",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                typer.Option(
                    help=f"Named recipe to start from: {', '.join(PRESETS)} (default: default).",
                    rich_help_panel=RECIPE_PANEL,
                ),
            ],
        )
    ]
    for name, field in Recipe.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = _option_type(field.annotation)
        extra.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    kind | None,
                    typer.Option(
                        flag,
                        help=f"{field.description} [env SENSORWATCH_{name.upper()}]",
                        rich_help_panel=RECIPE_PANEL,
                        show_default=False,
                    ),
                ],
            )
        )
    as_json = _json_fields()

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recipe = {name: kwargs.pop(name) for name in names}
        recipe = {
            k: _parse_json(k, v) if k in as_json else v for k, v in recipe.items() if v is not None
        }
        return command(*args, recipe=recipe, **kwargs)

    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "recipe"
    ]
    return _signed(wrapper, own + extra)


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name.replace('_', '-')}: not JSON ({exc.msg}): {text!r}") from None
