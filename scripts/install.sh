#!/usr/bin/env bash
# Installs (or upgrades) kms-appliance as a systemd service: a system user, the built program
# with its production dependencies in /usr/lib/kms-appliance, /etc/kms-appliance/config.yaml
# (only when none exists), the unit, a /usr/bin/kms-appliance command; then enables and starts
# it. Idempotent. An upgrade keeps the configuration and the database (the store migrates at the
# next start) and refuses to replace the program when the existing configuration does not
# validate with the new version.
#
#   scripts/install.sh [--no-start] [--force]
#
# Environment:
#   DESTDIR                 install below this root (packaging, tests): no user is created, no
#                           ownership changed, and systemctl is not called unless SYSTEMCTL is set
#   KMS_APPLIANCE_SOURCE    the built app (dist/, data/, package.json, package-lock.json and an
#                           installed node_modules); default: this repository, after `npm run build`
#   NODE                    the node binary the service runs (default /usr/bin/node)
#   SYSTEMCTL               the systemctl command (default systemctl)
#
# Dependencies are copied from the source's node_modules, keeping the packages the lockfile does
# not mark "dev": this needs no network (npm ci would fetch better-sqlite3's prebuilt binary or
# compile it) and installs exactly the native module that was built and tested with this node.
set -euo pipefail

NAME=kms-appliance
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
SOURCE="${KMS_APPLIANCE_SOURCE:-$REPO}"
DESTDIR="${DESTDIR:-}"
NODE="${NODE:-/usr/bin/node}"

START=1
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --no-start) START=0 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

LIB="/usr/lib/$NAME"
ETC="/etc/$NAME"
STATE="/var/lib/$NAME"
UNIT_DIR="/usr/lib/systemd/system"
SYSUSERS="/usr/lib/sysusers.d/$NAME.conf"

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

# systemctl only on a real root with systemd running, or when the caller names one (tests).
if [ -n "${SYSTEMCTL:-}" ]; then
  RUN_SYSTEMCTL=1
elif [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  RUN_SYSTEMCTL=1
  SYSTEMCTL=systemctl
else
  RUN_SYSTEMCTL=0
fi
systemctl_() { if [ "$RUN_SYSTEMCTL" = 1 ]; then $SYSTEMCTL "$@"; else say "skipped: systemctl $*"; fi; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (or set DESTDIR to install below a directory)"; fi
# The Node version package.json's "engines" asks for (">=20"): Debian 12 and Ubuntu 24.04 ship
# Node 18, so a distribution's nodejs package is often too old.
MIN_NODE="$(sed -n 's/.*"node": *">=\([0-9][0-9]*\).*/\1/p' "$SOURCE/package.json" 2>/dev/null | head -n1)"
MIN_NODE="${MIN_NODE:-20}"
NODE_FIX="install Node.js $MIN_NODE or later (https://nodejs.org, or NodeSource: curl -fsSL https://deb.nodesource.com/setup_lts.x | bash - && apt-get install -y nodejs) or set NODE=/path/to/node"
[ -x "$NODE" ] || die "$NODE not found: $NODE_FIX"
# The wrapper and the unit run it from / long after this script: an absolute path, the directory
# resolved now (NODE=./node or node-v20/bin/node would otherwise name another file, or none).
case "$NODE" in
  /*) ;;
  *) NODE="$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE")" ;;
esac
# Written into the wrapper as one shell word whatever it contains (spaces, quotes, $): a plain
# path as it is, any other in single quotes, each ' inside as '\''.
case "$NODE" in
  *[!A-Za-z0-9/._+-]*) NODE_WORD="'${NODE//\'/\'\\\'\'}'" ;;
  *) NODE_WORD="$NODE" ;;
esac
NODE_VERSION="$("$NODE" -p 'process.versions.node' 2>/dev/null || true)"
case "$NODE_VERSION" in
  [0-9]*) ;;
  *) die "$NODE does not run as Node.js: $NODE_FIX" ;;
esac
if [ "${NODE_VERSION%%.*}" -lt "$MIN_NODE" ]; then die "$NODE is Node.js $NODE_VERSION, too old: $NODE_FIX"; fi
for f in dist/src/cli/main.js package.json; do
  [ -e "$SOURCE/$f" ] || die "$SOURCE/$f is missing: run \`npm ci && npm run build\` first (or set KMS_APPLIANCE_SOURCE)"
done
[ -f "$REPO/systemd/$NAME.service" ] || die "$REPO/systemd/$NAME.service is missing"

# ---- the system user (before any chown) ----
install -d -m 0755 "$DESTDIR/usr/lib/sysusers.d"
printf 'u %s - "KMS volume-activation host" %s /usr/sbin/nologin\n' "$NAME" "$STATE" > "$DESTDIR$SYSUSERS"
if [ -z "$DESTDIR" ] && ! getent passwd "$NAME" >/dev/null; then
  if command -v systemd-sysusers >/dev/null && [ -d /run/systemd/system ]; then
    systemd-sysusers "$SYSUSERS"
  else
    useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
      --comment "KMS volume-activation host" "$NAME"
  fi
  say "created system user $NAME"
fi
# Ownership only on a real root: below DESTDIR the user does not exist.
own() { if [ -z "$DESTDIR" ]; then chown "$@"; fi; }

# ---- the program, staged next to the old one and swapped in whole ----
STAGE="$DESTDIR$LIB.new"
rm -rf "$STAGE"
install -d -m 0755 "$STAGE" "$STAGE/bin" "$STAGE/dist"
cp -R "$SOURCE/dist/src" "$STAGE/dist/src"
if [ -d "$SOURCE/data" ]; then cp -R "$SOURCE/data" "$STAGE/data"; fi
for f in package.json package-lock.json README.md LICENSE; do
  if [ -e "$SOURCE/$f" ]; then install -m 0644 "$SOURCE/$f" "$STAGE/$f"; fi
done
"$NODE" - "$SOURCE" "$STAGE" <<'JS'
// Copies the production packages of the lockfile (entries without "dev": true). Each entry is
// copied without its nested node_modules, which are entries of their own.
const fs = require('node:fs');
const path = require('node:path');
const [src, dst] = process.argv.slice(2);
const lockFile = [path.join(src, 'package-lock.json'), path.join(src, 'node_modules', '.package-lock.json')].find((f) => fs.existsSync(f));
if (!lockFile) {
  const deps = Object.keys(JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8')).dependencies ?? {});
  if (deps.length > 0) throw new Error(`${src} has no package-lock.json to tell production packages from dev ones`);
  process.exit(0);
}
const packages = JSON.parse(fs.readFileSync(lockFile, 'utf8')).packages ?? {};
let copied = 0;
for (const [key, meta] of Object.entries(packages)) {
  if (!key.startsWith('node_modules/') || meta.dev || meta.link) continue;
  const from = path.join(src, key);
  if (!fs.existsSync(from)) {
    if (meta.optional) continue; // an optional package for another platform
    throw new Error(`${from} is missing: run npm ci in ${src}`);
  }
  const nested = path.join(from, 'node_modules');
  fs.cpSync(from, path.join(dst, key), { recursive: true, filter: (p) => p !== nested });
  copied++;
}
console.log(`install.sh: ${copied} production packages copied`);
JS
cat > "$STAGE/bin/$NAME" <<EOF
#!/bin/sh
# Runs kms-appliance with the node it was installed for (exec: systemd's main PID is node).
# The server gets the heap settings and malloc arenas of src/server/node-flags.ts; the other commands do not.
# The program is found next to this script (through the /usr/bin symlink), so a copy installed
# below a staging root runs its own files.
LIB="\$(dirname "\$(dirname "\$(readlink -f "\$0")")")"
if [ "\$1" = serve ]; then
  export MALLOC_ARENA_MAX="\${MALLOC_ARENA_MAX:-2}"
  exec $NODE_WORD --max-semi-space-size=1 --max-old-space-size=96 "\$LIB/dist/src/cli/main.js" "\$@"
fi
exec $NODE_WORD "\$LIB/dist/src/cli/main.js" "\$@"
EOF
chmod 0755 "$STAGE/bin/$NAME"
chmod -R u=rwX,go=rX "$STAGE"

# ---- configuration: never overwritten; an upgrade must still accept it ----
install -d -m 0750 "$DESTDIR$ETC"
own root:"$NAME" "$DESTDIR$ETC"
CONFIG="$DESTDIR$ETC/config.yaml"
if [ -e "$CONFIG" ]; then
  if ! "$NODE" "$STAGE/dist/src/cli/main.js" config check "$CONFIG"; then
    if [ "$FORCE" = 1 ]; then
      say "warning: $ETC/config.yaml does not validate with this version; installing anyway (--force)"
    else
      rm -rf "$STAGE"
      die "$ETC/config.yaml does not validate with this version (errors above); the installed program is unchanged. Fix the file, or rerun with --force."
    fi
  fi
  say "kept $ETC/config.yaml"
else
  "$NODE" "$STAGE/dist/src/cli/main.js" config defaults > "$CONFIG.new"
  chmod 0640 "$CONFIG.new"
  own root:"$NAME" "$CONFIG.new"
  mv "$CONFIG.new" "$CONFIG"
  say "wrote $ETC/config.yaml with every default; edit it, then: systemctl reload $NAME"
fi

if [ -d "$DESTDIR$LIB" ]; then
  rm -rf "$DESTDIR$LIB.old"
  mv "$DESTDIR$LIB" "$DESTDIR$LIB.old"
  mv "$STAGE" "$DESTDIR$LIB"
  rm -rf "$DESTDIR$LIB.old"
  say "upgraded $LIB"
else
  mv "$STAGE" "$DESTDIR$LIB"
  say "installed $LIB"
fi

# ---- state directory (systemd's StateDirectory= creates it too; the database lives here) ----
install -d -m 0750 "$DESTDIR$STATE"
own "$NAME":"$NAME" "$DESTDIR$STATE"
# Group members read the database (the unit's UMask=0027); files an older version wrote 0600
# become group-readable too.
for f in "$DESTDIR$STATE/$NAME.db" "$DESTDIR$STATE/$NAME.db-wal" "$DESTDIR$STATE/$NAME.db-shm"; do
  if [ -f "$f" ]; then chmod g+r "$f"; fi
done

# ---- command and unit ----
install -d -m 0755 "$DESTDIR/usr/bin" "$DESTDIR$UNIT_DIR"
ln -sfn "$LIB/bin/$NAME" "$DESTDIR/usr/bin/$NAME"
install -m 0644 "$REPO/systemd/$NAME.service" "$DESTDIR$UNIT_DIR/$NAME.service"
# A copy in /etc/systemd/system (an administrator's customised unit) wins over the one just
# installed, so this version's ExecStart and settings would silently not apply: say so. Drop-ins
# (kms-appliance.service.d/*.conf) are the way to change a setting and keep the rest current.
for over in /etc/systemd/system /run/systemd/system; do
  if [ -e "$DESTDIR$over/$NAME.service" ]; then
    say "warning: $over/$NAME.service overrides the unit just installed in $UNIT_DIR; remove it (or compare the two) and put your changes in a drop-in, $over/$NAME.service.d/override.conf"
  fi
done

systemctl_ daemon-reload
if [ "$START" = 1 ]; then
  systemctl_ enable "$NAME.service"
  # restart: starts a new install, and runs an upgraded program (and its store migrations).
  systemctl_ restart "$NAME.service"
  if [ "$RUN_SYSTEMCTL" = 1 ]; then
    say "enabled and started $NAME.service (journalctl -u $NAME)"
  elif [ -z "$DESTDIR" ]; then
    # A container or a box without systemd: installed, and nothing runs it. Say how to.
    say "not started: systemd is not running here; start it with your service manager as user $NAME:"
    say "  /usr/bin/$NAME serve --config $ETC/config.yaml"
  fi
else
  say "not started (--no-start): systemctl enable --now $NAME.service"
fi
