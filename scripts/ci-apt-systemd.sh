#!/usr/bin/env bash
# Installs what test/scripts/systemd-unit.test.ts needs in CI: systemd-analyze (package "systemd"
# on Debian 12 / Ubuntu; no running systemd is needed). Idempotent: does nothing when present.
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1; then
  echo "ci-apt-systemd.sh: $(systemd-analyze --version | head -n 1) already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends systemd
systemd-analyze --version | head -n 1
