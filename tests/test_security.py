"""TLS and SASL settings on every Kafka client, logins that fail told in one line, and secrets that
never show: against the embedded broker reachable only over TLS (a TLS-terminating proxy in front
of it) and the embedded broker requiring logins (``tansu --authentication``)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import committed, fresh, read_all, run_until
from proxy import BehindProxy, TlsProxy

from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.tansu import free_port
from sensorwatch.pipeline.kafka import clients
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.settings import Settings

SECRET = "hunter2-Zq8-never-shown"


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key: (cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    """(bootstrap, CA file): the embedded broker, reachable only through a TLS-terminating proxy that
    it advertises; plaintext clients cannot reach it."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder, "broker")
    proxy_port = free_port()
    broker = BehindProxy(proxy_port, plain=False, log_dir=folder, timeout_s=30)
    broker.port = free_port()
    proxy = TlsProxy(broker.port, proxy_port, str(cert), str(key))
    with broker:
        yield f"127.0.0.1:{proxy_port}", cert, proxy
    proxy.close()


@pytest.fixture(scope="module")
def login_broker(tmp_path_factory):
    """Bootstrap servers of the embedded broker with client authentication required."""
    folder = tmp_path_factory.mktemp("login")
    broker = BehindProxy(args=("--authentication",), plain=False, log_dir=folder, timeout_s=30)
    broker.port = free_port()
    with broker:
        yield broker.bootstrap_servers, broker.log_path


def _serve(tmp_path: Path, tracking_uri: str, **env: str) -> subprocess.CompletedProcess:
    """``sensorwatch serve``; the refusals below give an empty model store: the broker and the login
    are checked before the champion is loaded, so the one error line is theirs, not the store's."""
    variables = {f"SENSORWATCH_{k.upper()}": v for k, v in env.items()}
    return subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", "serve", "--tracking-uri", tracking_uri],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **variables},
    )


@pytest.mark.integration
def test_every_client_speaks_tls_to_a_broker_reachable_only_over_tls(
    tls_broker, service_settings, champion_detector, plant_after_training
) -> None:
    bootstrap, ca, proxy = tls_broker
    settings = fresh(
        service_settings.model_copy(
            update={"bootstrap_servers": bootstrap, "security_protocol": "SSL", "ssl_cafile": ca}
        )
    )  # admin
    sim, _ = plant_after_training()
    frame = sim.normal(200)
    frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    sent = produce_frame(settings, frame, progress=False)  # a producer
    service = Service.on_kafka(settings, champion_detector)  # consumer, producer, admin
    run_until(service, sent)
    assert service.stats.scored == sent and committed(settings) == sent
    assert read_all(settings, settings.dlq_topic, timeout_s=3) == []  # a standalone consumer
    assert (
        proxy.handshakes >= 4
    )  # (its refusals are the plain TCP probes of `reach`, which send nothing)


@pytest.mark.integration
def test_a_broker_certificate_that_does_not_verify_is_one_line_and_exit_2(
    tls_broker, tmp_path
) -> None:
    bootstrap, _, proxy = tls_broker
    stranger, _ = self_signed(tmp_path, "stranger")
    refused = proxy.refused
    done = _serve(
        tmp_path,
        f"sqlite:///{tmp_path}/empty.db",
        bootstrap_servers=bootstrap,
        security_protocol="SSL",
        ssl_cafile=str(stranger),
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert (
        "the broker's certificate did not verify" in lines[0]
        and "SENSORWATCH_SSL_CAFILE" in lines[0]
    )
    assert proxy.refused > refused


@pytest.mark.integration
def test_tls_to_a_plaintext_broker_is_one_line_and_exit_2(broker, tmp_path) -> None:
    ca, _ = self_signed(tmp_path, "ca")
    done = _serve(
        tmp_path,
        f"sqlite:///{tmp_path}/empty.db",
        bootstrap_servers=broker,
        security_protocol="SSL",
        ssl_cafile=str(ca),
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "is the broker listening with TLS there?" in lines[0]


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT"])
def test_a_refused_scram_login_is_one_line_and_exit_2_and_the_password_never_shows(
    login_broker, tmp_path, protocol
) -> None:
    bootstrap, broker_log = login_broker
    done = _serve(
        tmp_path,
        f"sqlite:///{tmp_path}/empty.db",
        bootstrap_servers=bootstrap,
        security_protocol=protocol,
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
        sasl_password=SECRET,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert (
        "refused the SCRAM-SHA-256 login of user 'alice'" in lines[0]
        and "SENSORWATCH_SASL_PASSWORD" in lines[0]
    )
    assert SECRET not in done.stdout + done.stderr
    assert SECRET not in broker_log.read_text(errors="replace")


@pytest.mark.integration
def test_secrets_never_reach_the_log_errors_or_mlflow(tmp_path) -> None:
    env = {
        **os.environ,
        "SENSORWATCH_SASL_PASSWORD": SECRET,
        "SENSORWATCH_SSL_PASSWORD": SECRET,
        "SENSORWATCH_SASL_USERNAME": "alice",
        "SENSORWATCH_SASL_MECHANISM": "SCRAM-SHA-512",
    }
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = [
        [
            "train",
            "--readings",
            "300",
            "--assets",
            "2",
            "--epochs",
            "1",
            "--verbose",
            "--tracking-uri",
            uri,
        ],
        [
            "serve",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--tracking-uri",
            uri,
        ],  # an error: no broker
        [
            "train",
            "--readings",
            "300",
            "--tracking-uri",
            uri,
            "--window",
            "-3",
        ],  # an error: a bad option
    ]
    said = ""
    for args in runs:
        done = subprocess.run(
            [sys.executable, "-m", "sensorwatch.pipeline.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**env, "SENSORWATCH_BROKER_TIMEOUT_S": "1"},
        )
        said += done.stdout + done.stderr
    assert "registered" in said and "error:" in said
    assert SECRET not in said
    for path in tmp_path.rglob("*"):  # the MLflow store, its artifacts, the local champion copy
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_tls_and_sasl_settings_reach_every_client(monkeypatch) -> None:
    made: dict[str, dict] = {}

    def recorder(name):
        class Client:
            def __init__(self, *topics, **opts):
                made[name] = opts

            def list_topics(self):
                return ["t"]

            def close(self):
                pass

        return Client

    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(clients, name, recorder(name))
    monkeypatch.setattr(clients, "check_login", lambda settings: True)
    ca = Path(__file__)  # any readable file stands in for the CA here: nothing connects
    settings = Settings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=SECRET,
        ssl_cafile=ca,
        ssl_check_hostname=True,
    )
    clients.consumer(settings, "t")
    clients.producer(settings)
    clients.ensure_topics(settings, ["t"])
    for name, opts in made.items():
        assert opts["security_protocol"] == "SASL_SSL", name
        assert (
            opts["sasl_mechanism"] == "SCRAM-SHA-512" and opts["sasl_plain_username"] == "alice"
        ), name
        assert opts["sasl_plain_password"] == SECRET and opts["ssl_cafile"] == str(ca), name
    assert set(made) == {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    "env, says",
    [
        (
            {"SECURITY_PROTOCOL": "SASL_SSL"},
            "needs sasl_mechanism, sasl_username and sasl_password",
        ),
        ({"SSL_CAFILE": "/no/such/ca.pem"}, "no such file: /no/such/ca.pem"),
        ({"SSL_CERTFILE": __file__}, "ssl_certfile and ssl_keyfile go together"),
    ],
)
def test_incomplete_security_settings_are_one_line_and_exit_2(env, says, tmp_path) -> None:
    variables = {f"SENSORWATCH_{k}": v for k, v in env.items()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorwatch.pipeline.cli",
            "serve",
            "--bootstrap-servers",
            "127.0.0.1:9",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **variables},
    )
    assert (
        done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    ), done.stderr
