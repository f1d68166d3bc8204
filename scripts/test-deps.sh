#!/usr/bin/env bash
# Installs the system tools the test suite drives (dig and named for the DNS tests,
# systemd-analyze for the unit checks) when they are missing. Runs before `npm test`; as root it
# uses apt-get, otherwise it says what to install and the tests that need the tools fail clearly.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  for tool in dig named chromium systemd-analyze; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
      echo "test-deps: $tool is missing; install bind9-dnsutils, bind9, chromium, postgresql and systemd (as root: bash scripts/test-deps.sh)" >&2
  done
  exit 0
fi
bash "$here/ci-apt.sh" && bash "$here/ci-apt-systemd.sh"
