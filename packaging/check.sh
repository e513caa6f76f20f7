#!/usr/bin/env bash
# Builds and checks every package this machine can build or lint, then
# installs the .deb and runs a systemd lifecycle test against the installed
# unit (/usr/lib/systemd/user/paperclip@.service), and removes it again.
# Run as root (dpkg, the systemd harness). Prints PASS/FAIL per check and a
# closing "N passed, M failed" line; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
pass=0
fail=0
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

check "shell scripts parse" bash -c 'bash -n packaging/build-assets.sh && sh -n packaging/deb/postinst &&
  sh -n packaging/deb/postrm && sh -n packaging/deb/prerm && sh -n packaging/rpm/post-install.sh &&
  sh -n packaging/rpm/pre-uninstall.sh && sh -n packaging/rpm/post-uninstall.sh && bash -n packaging/arch/paperclipd.install'

check "PKGBUILD sources, version $version, all functions" bash -c "set -e; cd packaging/arch; source ./PKGBUILD;
  [[ \$pkgname == paperclipd && \$pkgver == $version ]]; declare -F prepare build check package >/dev/null;
  [[ -f \$install ]]"

check "Homebrew formula is valid Ruby, version $version" bash -c "ruby -c packaging/homebrew/paperclipd.rb >/dev/null &&
  grep -q 'version \"$version\"' packaging/homebrew/paperclipd.rb"

check "Dockerfile: BASE argument, no Rust build, paperclipd entrypoint, probe health check, non-root" python3 - <<'PY'
import re
t = open("packaging/container/Dockerfile").read()
lines = [l for l in t.splitlines() if l and not l.startswith("#")]
assert re.search(r"^ARG BASE=docker\.io/library/node:24-bookworm-slim$", t, re.M)
assert [l for l in lines if l.startswith("FROM ")] == ["FROM ${BASE}"]
assert "cargo" not in "\n".join(lines), "Rust is built outside the image"
assert 'ENTRYPOINT ["paperclipd"]' in t
assert re.search(r'HEALTHCHECK .*\n?.*CMD \["paperclipd", "probe"\]', t)
assert re.search(r"^USER (?!root|0)\w+", t, re.M), "runs as root"
assert re.search(r"^\s*PAPERCLIPD_ONBOARD_BIND=lan", t, re.M), "an empty volume must onboard unattended"
PY

check "Kubernetes manifests: one replica, Recreate, probes exec paperclipd probe, IfNotPresent" python3 - <<'PY'
import yaml
docs = [d for d in yaml.safe_load_all(open("packaging/kubernetes/paperclip.yaml")) if d]
kinds = {d["kind"]: d for d in docs}
dep = kinds["Deployment"]
assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
c = dep["spec"]["template"]["spec"]["containers"][0]
for p in ("startupProbe", "readinessProbe", "livenessProbe"):
    assert c[p]["exec"]["command"][:2] == ["paperclipd", "probe"], p
assert c["imagePullPolicy"] == "IfNotPresent"
assert {"name": "PAPERCLIPD_ONBOARD_BIND", "value": "lan"} in c["env"]
assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 45
assert "Service" in kinds and "PersistentVolumeClaim" in kinds
PY

check "Kubernetes manifests pass the restricted Pod Security Standard" \
  python3 packaging/kubernetes/restricted.py packaging/kubernetes/paperclip.yaml

check "Kubernetes manifests validate against the 1.37 schemas (kubernetes-validate --strict)" \
  python3 -m kubernetes_validate --strict --quiet -k 1.37.0 packaging/kubernetes/paperclip.yaml

# PAPERCLIPD_BIN: the binary to package (the release binary of
# packaging/npm/build.sh, e.g. OUT/bin/paperclipd-x86_64-unknown-linux-musl);
# else a release build of this checkout.
BIN=${PAPERCLIPD_BIN:-target/release/paperclipd}
if [ -n "${PAPERCLIPD_BIN:-}" ]; then
  check "assets (units, man page, completions) for $BIN ($("$BIN" --version 2>&1))" packaging/build-assets.sh "$BIN"
else
  check "release build and assets (units, man page, completions)" bash -c 'cargo build --release --locked -q && packaging/build-assets.sh'
fi

check "rendered units pass systemd-analyze verify" bash -c 'd=$(mktemp -d); trap "rm -rf $d" EXIT;
  mkdir -p $d/bin; cp target/dist/paperclipd $d/bin/;
  for s in user system; do sed "s|/usr/bin/paperclipd|$d/bin/paperclipd|" target/assets/$s/paperclip@.service >$d/paperclip@x.service;
    if [[ $s == user ]]; then out=$(XDG_RUNTIME_DIR=$d systemd-analyze --user verify $d/paperclip@x.service 2>&1);
    else out=$(systemd-analyze verify $d/paperclip@x.service 2>&1); fi;
    if grep -q "paperclip@" <<<"$out"; then echo "$out"; exit 1; fi; done'

check ".deb builds with the units, man page and completions" bash -c 'cargo deb --no-build --no-strip -q >/dev/null &&
  deb=$(ls -t target/debian/paperclipd_*.deb | head -1) && c=$(dpkg-deb -c "$deb") &&
  for f in ./usr/bin/paperclipd ./usr/lib/systemd/user/paperclip@.service ./usr/lib/systemd/system/paperclip@.service \
    ./usr/share/man/man1/paperclipd.1.gz ./usr/share/bash-completion/completions/paperclipd; do
    grep -qF "$f" <<<"$c" || { echo "missing $f"; exit 1; }; done'

check ".rpm builds with the units, the user-creating %post, the stopping %preun and the restarting %postun" bash -c 'cargo generate-rpm >/dev/null &&
  rpm=$(ls -t target/generate-rpm/paperclipd-*.rpm | head -1) && l=$(rpm -qpl "$rpm") &&
  grep -qx /usr/lib/systemd/system/paperclip@.service <<<"$l" && grep -qx /usr/bin/paperclipd <<<"$l" &&
  s=$(rpm -qp --scripts "$rpm") && grep -q useradd <<<"$s" &&
  grep -q "^preuninstall scriptlet" <<<"$s" && grep -q "^postuninstall scriptlet" <<<"$s" &&
  grep -q "systemctl stop" <<<"$s" && grep -q "try-restart" <<<"$s" && ! grep -q userdel <<<"$s"'

check "dpkg -i, then a systemd lifecycle on the installed user unit" bash -c 'set -e
  deb=$(ls -t target/debian/paperclipd_*.deb | head -1)
  had_user=$(getent passwd paperclip || true)
  # Purge keeps the user and its home (Debian practice); this check removes
  # them again when it was the one that made them.
  trap "dpkg -P paperclipd >/dev/null 2>&1; [ -n \"$had_user\" ] || { deluser --system paperclip >/dev/null 2>&1; delgroup --system paperclip >/dev/null 2>&1; rm -rf --one-file-system /var/lib/paperclip; }" EXIT
  dpkg -i "$deb" >/dev/null
  getent passwd paperclip >/dev/null
  [ -n "$had_user" ] || [[ $(stat -c %U:%G:%a /var/lib/paperclip) == paperclip:paperclip:700 ]] ||
    { echo "after dpkg -i: /var/lib/paperclip is $(stat -c %U:%G:%a /var/lib/paperclip 2>&1), want paperclip:paperclip:700"; exit 1; }
  PAPERCLIPD=/usr/bin/paperclipd FIXTURE=$PWD/tests/fixture/server.py PYTHON3=$(command -v python3 | xargs readlink -f) \
    PORT=$(python3 -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])") \
    tests/support/with-user-manager -- bash tests/systemd/packaged-unit.sh'

echo "$pass passed, $fail failed"
((fail == 0))
