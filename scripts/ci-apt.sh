#!/usr/bin/env bash
# Installs the Debian packages the tests drive when they are missing: dig (bind9-dnsutils) and
# named (bind9) for DNS, chromium for the admin page in a real browser, and a PostgreSQL server
# (postgresql: initdb/pg_ctl) for fleet reporting. Idempotent and non-interactive; needs root
# (CI runs as root) or sudo.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
have dig || missing+=(bind9-dnsutils)
have named || missing+=(bind9)
have chromium || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -eq 0 ]; then
  echo "ci-apt: dig, named, chromium and postgresql present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "ci-apt: need root to install ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "ci-apt: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package may start a system named on port 53; the tests run their own on a free port, so
# stop it where a service manager is around (harmless when there is none).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet named 2>/dev/null; then
  $SUDO systemctl stop named || true
fi
have dig && have named && have chromium
echo "ci-apt: ${missing[*]} installed"
