#!/usr/bin/env bash
# Install the agent on a unit (run on the Pi as root, from a checkout copied to it):
#   scripts/install-unit.sh build/units/pid-0042.toml
# Creates the pid-agent user, a venv in /opt/pid-agent with the Pi extras, the config in /etc/pid-agent,
# validates it with the agent itself and enables the service. Stops at the first failing step.
set -euo pipefail
config=${1:?usage: install-unit.sh UNIT_CONFIG.toml}
src=$(cd "$(dirname "$0")/.." && pwd)

id pid-agent >/dev/null 2>&1 || useradd --system --home /var/lib/pid-agent --shell /usr/sbin/nologin pid-agent
install -d -o root -g root /opt/pid-agent /etc/pid-agent
cp -r "$src/agent" "$src/drivers" "$src/models" "$src/setup.cfg" "$src/pyproject.toml" "$src/README.md" /opt/pid-agent/
python3 -m venv --system-site-packages /opt/pid-agent/.venv   # picamera2 comes from Raspberry Pi OS's apt
/opt/pid-agent/.venv/bin/pip install -q /opt/pid-agent
install -m 0640 -o root -g pid-agent "$config" /etc/pid-agent/agent.toml
/opt/pid-agent/.venv/bin/pid-agent check-config /etc/pid-agent/agent.toml
install -m 0644 "$src/systemd/pid-agent.service" /etc/systemd/system/pid-agent.service
systemctl daemon-reload
systemctl enable --now pid-agent.service
echo "installed; watch it with: pid-agent monitor --broker <url> --device $(basename "$config" .toml)"
