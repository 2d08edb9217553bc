"""Reading the deployment in docker/ as data: the Dockerfile's stages and what each target inherits,
the compose file's services, their environment and every ``sensorwatch`` command line they run."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sensorwatch.pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
SETTING_VARS = {f"SENSORWATCH_{name.upper()}" for name in Settings.model_fields}

# --- reading the Dockerfile ---------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str  # an image, or an earlier stage's name
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages(text: str) -> dict[str, Stage]:
    """The stages in order (the last is the default target), with global ARG defaults resolved in FROM."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            stages[name or str(len(stages))] = Stage(name, image)
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default.strip('"')
        else:
            list(stages.values())[-1].instructions.append((keyword, rest))
    return stages


STAGES = dockerfile_stages((DOCKER / "Dockerfile").read_text())
DEFAULT_TARGET = list(STAGES)[-1]


def chain(target: str) -> list[Stage]:
    """The stage and the stages it is built on, nearest first."""
    stages = [STAGES[target]]
    while stages[-1].base in STAGES:
        stages.append(STAGES[stages[-1].base])
    return stages


def last(target: str, keyword: str) -> str | None:
    """What a target inherits for an instruction that the last occurrence decides (CMD, USER, …)."""
    for stage in chain(target):
        found = [rest for kw, rest in stage.instructions if kw == keyword]
        if found:
            return found[-1]
    return None


def image_env(target: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in reversed(chain(target)):
        for kw, rest in stage.instructions:
            if kw == "ENV":
                env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


# --- reading the compose file -------------------------------------------------------------------


def interpolate(value: object) -> str:
    """A compose value with ``${VAR:-default}`` taken at its default and ``$$`` unescaped."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)).replace("$$", "$")


def service_env(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value) for key, value in env.items()}


def runs_our_image(service: dict) -> bool:
    return str(service.get("image", "")).startswith("sensorwatch") or "build" in service


def sensorwatch_invocations() -> dict[str, list[str]]:
    """Every command line the deployment hands to the ``sensorwatch`` entry point, by where it is."""
    found: dict[str, list[str]] = {}
    for target in STAGES:
        if last(target, "ENTRYPOINT") == '["sensorwatch"]':
            found[f"Dockerfile:{target}"] = json.loads(last(target, "CMD") or "[]")
    for name, service in SERVICES.items():
        if not runs_our_image(service):
            continue
        target = service.get("build", {}).get("target", DEFAULT_TARGET)
        if service.get("entrypoint", json.loads(last(target, "ENTRYPOINT"))) == ["sensorwatch"]:
            command = service.get("command")
            found[f"compose:{name}"] = (
                command if command is not None else json.loads(last(target, "CMD") or "[]")
            )
    return found


def settings_of(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("SENSORWATCH_")]:
        monkeypatch.delenv(key)
    for key, value in service_env(name).items():
        if key.startswith("SENSORWATCH_"):
            monkeypatch.setenv(key, value)
    return Settings()
