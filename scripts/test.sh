#!/usr/bin/env bash
# The test command of the README: installs what the tests need on a fresh Debian machine, then
# runs the whole suite. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  fi
}

# libudev + pkg-config: only for the `enocean` crate, a dev-dependency used as a second parser in
# tests/differential_enocean.rs (its serialport dependency links libudev).
need=()
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists libudev 2>/dev/null || need+=(libudev-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${need[*]}"
  apt_install "${need[@]}"
fi

# A real MQTT broker for tests/mqtt_*.rs (mosquitto, mosquitto_passwd), and Python's jinja2 to
# render the Home Assistant discovery templates as Home Assistant does.
need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
python3 -c "import jinja2" >/dev/null 2>&1 || need+=(python3-jinja2)
if [ ${#need[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${need[*]}"
  apt_install "${need[@]}" || echo "scripts/test.sh: could not install ${need[*]}; the MQTT tests skip"
fi
# The Debian package starts a broker on port 1883 as a service where systemd runs; the tests
# start their own on free ports and do not need it.

# Python receiver for tests/webhook_python.rs: verifies the hex HMAC with hmac.compare_digest and
# Standard Webhooks signatures with the `standardwebhooks` package, in a venv of the project's.
if ! python3 -m venv --help >/dev/null 2>&1; then
  echo "scripts/test.sh: installing python3-venv"
  apt_install python3-venv
fi
if ! .venv/bin/python -c "import standardwebhooks" >/dev/null 2>&1; then
  echo "scripts/test.sh: creating .venv with standardwebhooks"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check standardwebhooks
fi
export ENOCEAN_AGENT_PYTHON="$PWD/.venv/bin/python"

cargo test --locked "$@"
