#!/usr/bin/env bash
# Owns: the npm channel's end-to-end check. Builds every binary and package
# (packaging/npm/build.sh), checks each binary's header (Mach-O CPU type and
# minos 11.0, static ELF) and SHA256SUMS, publishes the packages to a
# throwaway verdaccio on 127.0.0.1 (no uplink: nothing reaches or is sent to
# the public registry), installs `npm install -g paperclipd` as a user
# whose PATH has no cargo, with Node 24 (process.execve) and with the
# machine's older Node (the spawn fallback), checks the launcher, pins the
# service binary through `paperclipd install` under a real systemd user
# manager, and runs tests/e2e/run.sh with the npm-installed binary.
#
#   sudo packaging/npm/check.sh [OUT]     (OUT: where build.sh puts its
#                                          output; default a temp dir)
# Env: NPM_CHECK_E2E=0 skips the e2e run; NPM_CHECK_BUILD=0 tests an OUT
# that build.sh filled before. Caches: /var/cache/paperclipd-dist
# (toolchain, target dir, verdaccio), /var/cache/paperclipd-e2e (Node 24,
# Paperclip). Prints PASS/FAIL per check, then "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${PAPERCLIPD_DIST_CACHE:-/var/cache/paperclipd-dist}
VERDACCIO_VERSION=6.8.0
TEST_USER=paperclipd-npm
T0=$SECONDS
die() { printf 'npm/check: %s\n' "$*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (creates a user, starts a systemd user manager)"

WORK=$(mktemp -d /tmp/paperclipd-npm-check.XXXXXX)
chmod 755 "$WORK"
VPID=
cleanup() {
  [ -n "$VPID" ] && kill "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
OUT=${1:-$WORK/out}

pass=0 fail=0
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "PASS $name"
    pass=$((pass + 1))
  else
    echo "FAIL $name"
    printf '%s\n' "$out" | tail -25 | sed 's/^/    /'
    fail=$((fail + 1))
  fi
}

t=$SECONDS
if [ "${NPM_CHECK_BUILD:-1}" = 0 ] && [ -f "$OUT/SHA256SUMS" ]; then
  echo "npm/check: NPM_CHECK_BUILD=0: testing what is in $OUT"
else
  packaging/npm/build.sh "$OUT" || die "packaging/npm/build.sh failed"
fi
echo "== npm/check: build: $((SECONDS - t))s"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
HOST=$(uname -m)-unknown-linux-musl
NPM_OS_CPU=linux-$(case $(uname -m) in x86_64) echo x64 ;; aarch64) echo arm64 ;; esac)

check "SHA256SUMS lists and matches every artifact" bash -c "cd '$OUT' && sha256sum --quiet -c SHA256SUMS &&
  [ \$(wc -l <SHA256SUMS) = \$(find bin dist npm -type f | wc -l) ]"
check "binaries: Mach-O CPU type and minos 11.0, static ELF per CPU" python3 packaging/npm/binfmt.py --minos 11.0 \
  "$OUT/bin/paperclipd-aarch64-apple-darwin" aarch64-apple-darwin \
  "$OUT/bin/paperclipd-x86_64-apple-darwin" x86_64-apple-darwin \
  "$OUT/bin/paperclipd-aarch64-unknown-linux-musl" aarch64-unknown-linux-musl \
  "$OUT/bin/paperclipd-x86_64-unknown-linux-musl" x86_64-unknown-linux-musl
formula_check() {
  local a sum
  ruby -c "$OUT/dist/paperclipd.rb" || return 1
  for a in "$OUT"/dist/paperclipd-*.tar.gz; do
    sum=$(sha256sum "$a" | cut -d' ' -f1)
    grep -qF "/${a##*/}\"" "$OUT/dist/paperclipd.rb" && grep -qF "sha256 \"$sum\"" "$OUT/dist/paperclipd.rb" \
      || { echo "${a##*/} ($sum) is not in the formula"; return 1; }
  done
}
check "Homebrew formula: valid Ruby, each archive's url and sha256" formula_check
check "packages: no install scripts; os/cpu/libc set; versions $VERSION" python3 - "$OUT/npm" "$VERSION" <<'PY'
import json, sys, tarfile, glob
d, version = sys.argv[1], sys.argv[2]
tgz = sorted(glob.glob(d + "/*.tgz"))
assert len(tgz) == 5, tgz
seen = {}
for t in tgz:
    with tarfile.open(t) as tf:
        pj = json.load(tf.extractfile("package/package.json"))
        names = tf.getnames()
    assert pj["version"] == version, (t, pj["version"])
    scripts = set(pj.get("scripts", {})) & {"preinstall", "install", "postinstall", "prepare"}
    assert not scripts, (t, scripts)
    seen[pj["name"]] = pj
    if pj["name"] != "paperclipd":
        assert pj["os"] and pj["cpu"], t
        assert "package/bin/paperclipd" in names, names
        m = tf.getmember("package/bin/paperclipd") if False else None
        if pj["os"] == ["linux"]:
            assert pj["libc"] == ["glibc", "musl"], pj
main = seen["paperclipd"]
assert set(main["optionalDependencies"]) == set(seen) - {"paperclipd"}, main
assert all(v == version for v in main["optionalDependencies"].values())
assert main["bin"] == {"paperclipd": "bin/paperclipd.js"}
print(sorted(seen))
PY

# Node 24 (process.execve) from the e2e's cache; the machine's /usr/bin/node
# is older (the spawn fallback).
SETUP_OUT=$(tests/e2e/setup-paperclip.sh) || die "tests/e2e/setup-paperclip.sh failed"
eval "$SETUP_OUT"
: "${NODE_DIR:?}" "${NPM_SHIM:?}"

# --- a throwaway registry ---------------------------------------------------
t=$SECONDS
V=$CACHE/verdaccio
if [ "$(cat "$V/.paperclipd-setup" 2>/dev/null)" != "verdaccio@$VERDACCIO_VERSION" ]; then
  rm -rf "$V"
  npm install --prefix "$V" --no-audit --no-fund --silent "verdaccio@$VERDACCIO_VERSION" >/dev/null \
    || die "npm install verdaccio@$VERDACCIO_VERSION failed"
  echo "verdaccio@$VERDACCIO_VERSION" >"$V/.paperclipd-setup"
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=http://127.0.0.1:$PORT/
mkdir -p "$WORK/registry"
# No uplinks: the registry serves only what is published to it.
cat >"$WORK/registry/config.yaml" <<YAML
storage: $WORK/registry/storage
listen: 127.0.0.1:$PORT
auth:
  htpasswd:
    file: $WORK/registry/htpasswd
    max_users: -1
uplinks: {}
packages:
  '**':
    access: \$all
    publish: \$anonymous
log: { type: stdout, format: pretty, level: warn }
YAML
"$V/node_modules/.bin/verdaccio" --config "$WORK/registry/config.yaml" >"$WORK/registry/log" 2>&1 &
VPID=$!
for _ in $(seq 300); do
  curl -fsS "${REG}-/ping" >/dev/null 2>&1 && break
  kill -0 "$VPID" 2>/dev/null || { cat "$WORK/registry/log"; die "verdaccio exited"; }
  sleep 0.1
done
curl -fsS "${REG}-/ping" >/dev/null || die "verdaccio did not answer on $REG within 30 s"
echo "== npm/check: registry on $REG: $((SECONDS - t))s"

# Publishing reads only this file: the registry is given on every command.
NPMRC=$WORK/publish.npmrc
printf 'registry=%s\n//127.0.0.1:%s/:_authToken=anonymous\n' "$REG" "$PORT" >"$NPMRC"
publish_all() {
  local f main=$OUT/npm/paperclipd-$VERSION.tgz
  # The platform packages first: the main package depends on them.
  for f in "$OUT"/npm/*.tgz; do
    [ "$f" = "$main" ] || npm publish --userconfig "$NPMRC" --registry "$REG" "$f" || return 1
  done
  npm publish --userconfig "$NPMRC" --registry "$REG" "$main" || return 1
  curl -fsS "${REG}paperclipd" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dist-tags"])'
}
check "publish the 5 packages to the local registry only" publish_all

# --- install as a user without cargo ----------------------------------------
getent passwd "$TEST_USER" >/dev/null ||
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$TEST_USER" ||
  die "useradd $TEST_USER failed"
U_HOME=$WORK/home
install -d -o "$TEST_USER" -g "$TEST_USER" -m 700 "$U_HOME"
PREFIX=$U_HOME/.npm-global
as_user() { # PATH_HEAD CMD...: as the test user, a clean environment, no cargo
  local head=$1; shift
  setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
    env -i HOME="$U_HOME" USER="$TEST_USER" LOGNAME="$TEST_USER" LANG=C.UTF-8 \
    PATH="$PREFIX/bin:$head:/usr/local/bin:/usr/bin:/bin" npm_config_registry="$REG" \
    npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false "$@"
}
NATIVE=$PREFIX/lib/node_modules/paperclipd/node_modules/@paperclipd/$NPM_OS_CPU/bin/paperclipd
install_npm() {
  as_user "$NODE_DIR" sh -c '! command -v cargo && ! command -v rustc' || { echo "cargo on the user's PATH"; return 1; }
  as_user "$NODE_DIR" npm install -g --prefix "$PREFIX" paperclipd || return 1
  ls "$PREFIX/lib/node_modules/paperclipd/node_modules/@paperclipd/"
  # Only this platform's package.
  [ "$(ls "$PREFIX/lib/node_modules/paperclipd/node_modules/@paperclipd/")" = "$NPM_OS_CPU" ] || return 1
  v=$(as_user "$NODE_DIR" paperclipd --version) || return 1
  echo "$v"
  [ "$v" = "paperclipd $VERSION ($HOST, commit $(sed -n 's/.*commit \(.*\))$/\1/p' <<<"$v"))" ] &&
    ! grep -q 'commit unknown' <<<"$v"
}
check "npm install -g paperclipd (Node 24, user without cargo): only @paperclipd/$NPM_OS_CPU" install_npm

# A probe of a port that accepts and never answers runs for its timeout:
# long enough to look at the process, and it exits 1 (not ready).
HOLD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $HOLD)); s.listen(16); time.sleep(120)" &
HOLD_PID=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $HOLD), 1).close()" 2>/dev/null && break
  sleep 0.1
done
launcher() { # NODE_DIR MODE: execve (one process) or spawn (node + child)
  local node_dir=$1 mode=$2 pid exe i rc
  as_user "$node_dir" node --version
  # The subshell execs setpriv, which execs env, which execs the launcher:
  # $pid is the launcher's process.
  (exec setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
    env -i HOME="$U_HOME" PATH="$PREFIX/bin:$node_dir:/usr/bin:/bin" \
    paperclipd probe --url "http://127.0.0.1:$HOLD/") &
  pid=$!
  for i in $(seq 200); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
    case "$mode:$exe" in
      execve:*/bin/paperclipd) break ;;
      spawn:*/node) pgrep -P "$pid" -x paperclipd >/dev/null && break ;;
    esac
    sleep 0.05
  done
  echo "pid $pid exe $exe; children: $(pgrep -P "$pid" -a || echo none)"
  case $mode in
    execve) [ "$exe" = "$(readlink -f "$NATIVE")" ] || { kill "$pid"; return 1; }
            [ -z "$(pgrep -P "$pid")" ] || return 1
            rc=0; wait "$pid" || rc=$?; echo "exit $rc"; [ "$rc" = 1 ] ;;
    spawn)  [ "${exe##*/}" = node ] || { kill "$pid"; return 1; }
            # SIGTERM to the launcher reaches paperclipd; the launcher then
            # dies of the same signal as its child.
            kill -TERM "$pid"
            rc=0; wait "$pid" || rc=$?; echo "exit $rc"; [ "$rc" = 143 ] ;;
  esac
}
check "Node 24: the launcher execs the native binary (no node left), exit code kept" launcher "$NODE_DIR" execve
if /usr/bin/node -e 'process.exit(typeof process.execve === "function" ? 1 : 0)' 2>/dev/null; then
  check "Node $(/usr/bin/node --version) (no process.execve): spawn fallback, SIGTERM forwarded, signal kept" \
    launcher /usr/bin spawn
  check "Node $(/usr/bin/node --version): exit code kept" bash -c \
    "$(declare -f as_user); $(declare -p TEST_USER U_HOME PREFIX REG); rc=0; as_user /usr/bin paperclipd probe --url http://127.0.0.1:$HOLD/ || rc=\$?; [ \$rc = 1 ]"
fi
kill "$HOLD_PID" 2>/dev/null; wait "$HOLD_PID" 2>/dev/null

# `paperclipd install` from the npm install: the unit names a pinned copy,
# which outlives `npm uninstall -g` (as it outlives an nvm switch).
pin_check() {
  local unit=$U_HOME/.config/systemd/user/paperclip@.service pinned=$U_HOME/.local/share/paperclipd/bin/paperclipd
  WUM_HOME=$U_HOME "$ROOT/tests/support/with-user-manager" --user "$TEST_USER" -- \
    env PATH="$PREFIX/bin:$NODE_DIR:$(dirname "$NPM_SHIM"):/usr/local/bin:/usr/bin:/bin" \
    sh -c 'paperclipd install 2>&1; echo "install exit $?"' || return 1
  grep -n '^ExecStart=' "$unit" || return 1
  grep -q "^ExecStart=$pinned run" "$unit" || return 1
  cmp "$pinned" "$(readlink -f "$NATIVE")" || return 1
  as_user "$NODE_DIR" npm uninstall -g --prefix "$PREFIX" paperclipd || return 1
  [ ! -e "$NATIVE" ] || return 1
  "$pinned" --version
}
check "paperclipd install (npm): ExecStart names the pinned copy, which outlives npm uninstall" pin_check
# Back for the e2e.
check "npm install -g paperclipd again" as_user "$NODE_DIR" npm install -g --prefix "$PREFIX" paperclipd

if [ "${NPM_CHECK_E2E:-1}" != 0 ]; then
  t=$SECONDS
  # Its own per-scenario lines and timings are shown, indented, pass or fail.
  name="tests/e2e/run.sh with the npm-installed binary ($NATIVE)"
  if env PAPERCLIPD="$NATIVE" tests/e2e/run.sh 2>&1 | sed 's/^/    /'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    echo "PASS $name"; pass=$((pass + 1))
  else
    echo "FAIL $name"; fail=$((fail + 1))
  fi
  echo "== npm/check: e2e: $((SECONDS - t))s"
fi
echo "== npm/check: total $((SECONDS - T0))s"
echo "$pass passed, $fail failed"
((fail == 0))
