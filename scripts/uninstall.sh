#!/usr/bin/env bash
# Removes kms-appliance: stops and disables the service, removes the program, the unit and the
# /usr/bin command. Keeps /etc/kms-appliance (configuration) and /var/lib/kms-appliance (the
# database of clients and the host identity) so a reinstall carries on where it stopped, unless
# --purge, which also removes them and the system user. Idempotent.
#
#   scripts/uninstall.sh [--purge]
#
# Environment: DESTDIR and SYSTEMCTL as for install.sh.
set -euo pipefail

NAME=kms-appliance
DESTDIR="${DESTDIR:-}"
PURGE=0
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

LIB="/usr/lib/$NAME"
ETC="/etc/$NAME"
STATE="/var/lib/$NAME"
UNIT="/usr/lib/systemd/system/$NAME.service"
SYSUSERS="/usr/lib/sysusers.d/$NAME.conf"

say() { echo "uninstall.sh: $*"; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (or set DESTDIR)" >&2
  exit 1
fi

if [ -n "${SYSTEMCTL:-}" ]; then
  RUN_SYSTEMCTL=1
elif [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  RUN_SYSTEMCTL=1
  SYSTEMCTL=systemctl
else
  RUN_SYSTEMCTL=0
fi

# Stopping a service that is not installed (second run) is not an error.
if [ "$RUN_SYSTEMCTL" = 1 ]; then
  $SYSTEMCTL disable --now "$NAME.service" 2>/dev/null || true
else
  say "skipped: systemctl disable --now $NAME.service"
fi

rm -f "$DESTDIR$UNIT" "$DESTDIR/usr/bin/$NAME"
rm -rf "$DESTDIR$LIB" "$DESTDIR$LIB.new" "$DESTDIR$LIB.old"
say "removed $LIB, $UNIT and /usr/bin/$NAME"

if [ "$RUN_SYSTEMCTL" = 1 ]; then
  $SYSTEMCTL daemon-reload
else
  say "skipped: systemctl daemon-reload"
fi

if [ "$PURGE" = 1 ]; then
  # StateDirectory= of a DynamicUser= service would live under /var/lib/private; remove it too.
  rm -rf "$DESTDIR$ETC" "$DESTDIR$STATE" "$DESTDIR/var/lib/private/$NAME"
  rm -f "$DESTDIR$SYSUSERS"
  if [ -z "$DESTDIR" ] && getent passwd "$NAME" >/dev/null; then
    userdel "$NAME"
    say "removed system user $NAME"
  fi
  say "purged $ETC and $STATE"
else
  say "kept $ETC and $STATE (remove them with --purge)"
fi
