#!/usr/bin/env bash
# Kept for engineers' habits: there is one install path, scripts/provision, and this only hands over to it.
#   scripts/install-unit.sh BUNDLE          (a unit's bundle from scripts/make-bundle; run on the Pi as root)
# A config file alone (the old usage) is refused: the bundle carries the wheels, certificates and keys the unit
# needs, so nothing is copied from a checkout or downloaded on site.
set -euo pipefail
bundle=${1:?usage: install-unit.sh BUNDLE (build one with scripts/make-bundle CONFIG --wheels build/dist/wheels --out BUNDLE)}
if [ -f "$bundle" ]; then
  echo "install-unit.sh: $bundle is a file; give the unit's bundle folder (scripts/make-bundle $bundle --wheels build/dist/wheels --out BUNDLE)" >&2
  exit 2
fi
# provision reads the config with the agent's own schema: $PYTHON is an interpreter that has the agent's
# dependencies (on a unit, the venv that flash's firstrun.sh installs from the bundle's wheels)
exec "${PYTHON:-python3}" "$(dirname "$0")/provision" "$@"
