#!/usr/bin/env bash
# The images of docker/Dockerfile, built and smoke-tested with podman where no registry can be
# pulled from: the base is made from Debian's own packages (mmdebstrap, the host's apt sources).
#
#   docker/image.sh build   # `make image`: the base when missing, then the scorer and full images
#   docker/image.sh test    # `make image-test`: version, train --promote, serve, simulate, alarms, stop
#
# pip inside the build uses the host's package index configuration (its pip.conf files and PIP_*
# variables, merged into one file) and the host's CA bundle; local paths they name are mounted
# read-only at the same place. Generated files stay in build/image/ (ignored by git). Run as root,
# or as a user whom sudo lets install packages without a password. IMAGE_TARGETS picks the
# targets (default: "scorer runtime").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/build/image
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
BASE=localhost/sensorwatch-base:bookworm
FULL=localhost/sensorwatch:$VERSION
SCORER=localhost/sensorwatch-scorer:$VERSION
TARGETS=${IMAGE_TARGETS:-scorer runtime}
SUDO=$([ "$(id -u)" = 0 ] || echo "sudo -n")
CA=/etc/ssl/certs/ca-certificates.crt

say() { printf '%s image: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
mkdir -p "$WORK"

# podman's default runtime (crun) cannot start containers on these hosts (RLIMIT_NOFILE with
# cgroups v1): runc, with limits of its own.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

install_missing() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} = 0 ] && return
  say "installing ${missing[*]} (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

size_of() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }

# Debian bookworm's minimal base with Python 3.11, from the mirrors of the host's own apt sources.
make_base() {
  if podman image exists "$BASE"; then
    say "base $BASE exists ($(size_of "$BASE"))"
    return
  fi
  if [ ! -s "$WORK/base.tar" ]; then
    install_missing mmdebstrap
    local mirrors=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && grep -qE '^[^#]*\bbookworm\b' "$f" && mirrors+=("$f")
    done
    say "making the base from Debian's packages (${mirrors[*]:-the default mirror})"
    $SUDO mmdebstrap --quiet --variant=minbase --format=tar \
      --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
      --aptopt='APT::Install-Recommends "false"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      bookworm "$WORK/base.tar.part" "${mirrors[@]}"
    mv "$WORK/base.tar.part" "$WORK/base.tar"
  fi
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    "$WORK/base.tar" "$BASE" >/dev/null
  say "base $BASE imported ($(size_of "$BASE"))"
}

# The host's pip configuration as one file (files in pip's own order, then PIP_* variables), and
# the local paths it names (find-links, file:// indexes, constraints, the CA bundle): one per line.
pip_config() {
  python3 - "$WORK/pip.conf" "$WORK/pip-mounts" "$CA" <<'PY'
import configparser, os, sys
from pathlib import Path
from urllib.parse import urlparse

out, mounts_out, ca = sys.argv[1:4]
home = Path.home()
files = [Path(d) / "pip" / "pip.conf" for d in os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")]
files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf"]
files += [Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "pip" / "pip.conf"]
if os.environ.get("PIP_CONFIG_FILE"):
    files.append(Path(os.environ["PIP_CONFIG_FILE"]))
merged = configparser.RawConfigParser()
merged.read([f for f in files if f.is_file()])
env = {k[4:].lower().replace("_", "-"): v for k, v in os.environ.items() if k.startswith("PIP_")}
env.pop("config-file", None)
if not merged.has_section("global"):
    merged.add_section("global")
for key, value in env.items():
    for section in merged.sections():
        merged.remove_option(section, key)
    merged.set("global", key, value)
# What only makes sense on the host: its cache, install locations, logs.
for section in merged.sections():
    for key in ("cache-dir", "target", "prefix", "root", "user", "src", "log", "require-virtualenv"):
        merged.remove_option(section, key)
if Path(ca).is_file() and not any(merged.has_option(s, "cert") for s in merged.sections()):
    merged.set("global", "cert", ca)
mounts = set()
for section in merged.sections():
    for key, value in merged.items(section):
        for token in value.split():
            path = urlparse(token).path if token.startswith("file://") else token
            if not path.startswith("/") or not os.path.exists(path):
                continue
            if key.endswith("index-url") and Path(path).name == "simple":
                path = str(Path(path).parent)  # an index's pages link to files beside it
            mounts.add(os.path.normpath(path))
with open(out, "w") as f:
    merged.write(f)
Path(mounts_out).write_text("".join(f"{m}\n" for m in sorted(mounts)))
PY
}

build() {
  install_missing podman buildah runc
  make_base
  pip_config
  local mounts=(-v "$WORK/pip.conf:/etc/pip.conf:ro")
  while read -r path; do mounts+=(-v "$path:$path:ro"); done <"$WORK/pip-mounts"
  for target in $TARGETS; do
    local tag=$FULL
    [ "$target" = runtime ] || tag=localhost/sensorwatch-$target:$VERSION
    local before
    before=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    say "building target $target as $tag"
    local t0=$SECONDS
    # (docker format: OCI images have no HEALTHCHECK; pip's notes on the host's extra indexes
    # lacking a package are left out of the log)
    podman build --quiet --network host --layers --format docker -f docker/Dockerfile \
      --target "$target" --build-arg PYTHON_IMAGE="$BASE" "${mounts[@]}" -t "$tag" . \
      2> >(grep -v "^WARNING: Location 'file://" >&2) >/dev/null
    local after
    after=$(podman image inspect --format '{{.Id}}' "$tag")
    # The image this build replaced: its own layers (the cached ones stay with the new image).
    if [ -n "$before" ] && [ "$before" != "$after" ]; then podman rmi "$before" >/dev/null 2>&1 || true; fi
    say "built $tag in $((SECONDS - t0)) s: $(size_of "$tag")"
  done
  sizes
}

sizes() {
  podman image ls --filter reference='localhost/sensorwatch*' \
    --format 'table {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
}

# --- the smoke test -------------------------------------------------------------------------------

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits (at most $2 s) until the URL $1 answers 200; prints its body.
get() {
  python3 - "$1" "${2:-0}" <<'PY'
import sys, time, urllib.request

url, wait = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + wait
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            sys.stdout.write(r.read().decode())
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"{url}: no answer in {wait:.0f} s")
        time.sleep(0.5)
PY
}

metric() { awk -v m="$1" '$1 == m {printf "%d", $2; found = 1} END {if (!found) printf "0"}'; }

smoke_test() {
  for image in "$FULL" "$SCORER"; do
    podman image exists "$image" || { echo "error: no image $image: run make image first" >&2; exit 1; }
  done
  sizes
  local t0=$SECONDS run=sw-smoke-$$ data
  data=$(mktemp -d "$WORK/smoke.XXXXXX")
  chown 10001:10001 "$data" 2>/dev/null || chmod 0777 "$data"
  # shellcheck disable=SC2064 # the names are fixed now
  trap "podman rm -f -t 0 $run-broker $run-serve >/dev/null 2>&1 || true; rm -rf '$data'" EXIT
  local port metrics_port
  port=$(free_port)
  metrics_port=$(free_port)
  local common=(--no-healthcheck --network host -v "$data:/var/lib/sensorwatch" -e "SENSORWATCH_BOOTSTRAP_SERVERS=127.0.0.1:$port")

  for image in "$FULL" "$SCORER"; do
    say "$image: $(podman run --rm --no-healthcheck "$image" --version) as uid $(podman run --rm --no-healthcheck --entrypoint id "$image" -u)"
  done

  # The embedded broker is the full image's (the `broker` extra): a scorer runs beside a real Kafka.
  podman run -d --no-healthcheck --name "$run-broker" --network host "$FULL" broker --port "$port" >/dev/null
  python3 - "$port" <<'PY'
import socket, sys, time

deadline = time.monotonic() + 60
while socket.socket().connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0:
    if time.monotonic() > deadline:
        sys.exit("the broker did not listen in 60 s")
    time.sleep(0.2)
PY
  say "broker listening on 127.0.0.1:$port"

  local t=$SECONDS
  podman run --rm "${common[@]}" "$FULL" train --assets 2 --readings 600 --epochs 2 --promote
  say "train --promote (full image) in $((SECONDS - t)) s"

  t=$SECONDS
  podman run -d --name "$run-serve" "${common[@]}" -e "SENSORWATCH_METRICS_PORT=$metrics_port" \
    "$SCORER" serve >/dev/null
  get "http://127.0.0.1:$metrics_port/readyz" 120 >/dev/null ||
    { podman logs "$run-serve" >&2; exit 1; }
  say "serve (scorer image) ready on /readyz in $((SECONDS - t)) s"

  local assets=2 readings=400 sent
  sent=$((assets * readings))
  podman run --rm "${common[@]}" "$SCORER" simulate --assets $assets --readings $readings --faults 1
  t=$SECONDS
  local body records=0 scored=0 windows=0
  while :; do
    body=$(get "http://127.0.0.1:$metrics_port/metrics")
    records=$(metric sensorwatch_records_total <<<"$body")
    scored=$(metric sensorwatch_readings_scored_total <<<"$body")
    windows=$(metric sensorwatch_windows_scored_total <<<"$body")
    [ "$records" -ge "$sent" ] && [ "$windows" -gt 0 ] && break
    if [ $((SECONDS - t)) -gt 120 ]; then
      podman logs "$run-serve" >&2
      echo "error: after 120 s the service read $records of $sent readings, scored $windows windows" >&2
      exit 1
    fi
    sleep 1
  done
  say "readings scored: $records records read of $sent sent, $scored readings in windows, $windows windows scored"

  # The alarms raised go to MLflow for review with their plots (matplotlib): wait until none waits.
  local anomalies logged pending
  t=$SECONDS
  while :; do
    body=$(get "http://127.0.0.1:$metrics_port/metrics")
    anomalies=$(metric sensorwatch_anomalies_total <<<"$body")
    logged=$(metric sensorwatch_review_logged_total <<<"$body")
    pending=$(metric sensorwatch_review_pending <<<"$body")
    if [ "$anomalies" = 0 ] || { [ "$logged" -gt 0 ] && [ "$pending" = 0 ]; }; then break; fi
    if [ $((SECONDS - t)) -gt 60 ]; then
      podman logs "$run-serve" >&2
      echo "error: after 60 s $pending of the $anomalies anomalies raised still wait for MLflow" >&2
      exit 1
    fi
    sleep 1
  done
  if [ "$anomalies" = 0 ]; then
    say "no anomaly raised on these readings: the review path was not run"
  else
    say "anomalies raised: $anomalies, logged to MLflow for review: $logged"
  fi

  podman stop -t 30 "$run-serve" >/dev/null # SIGTERM, then SIGKILL after 30 s
  local code
  code=$(podman inspect --format '{{.State.ExitCode}}' "$run-serve")
  [ "$code" = 0 ] || { podman logs "$run-serve" >&2; echo "error: serve exited $code on SIGTERM" >&2; exit 1; }
  say "serve stopped on SIGTERM with exit 0"
  say "smoke test passed in $((SECONDS - t0)) s"
}

case "${1:-}" in
  build) build ;;
  test) smoke_test ;;
  sizes) sizes ;;
  *) echo "usage: docker/image.sh build|test|sizes" >&2; exit 2 ;;
esac
