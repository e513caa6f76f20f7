#!/usr/bin/env bash
# Owns: the release artifacts. Builds paperclipd for every shipped target
# with cargo-zigbuild and assembles, in OUT:
#   bin/paperclipd-<target>                    the four binaries
#   dist/paperclipd-<version>-<target>.tar.gz  release archives (binary, man
#                                              page, completions, README)
#   dist/paperclipd.rb                         the Homebrew formula for them
#   npm/paperclipd-<version>.tgz               the main npm package (launcher)
#   npm/paperclipd-<os>-<cpu>-<version>.tgz    one package per platform
#   SHA256SUMS                                 of all of the above
#
#   packaging/npm/build.sh OUT
#
# Targets: x86_64/aarch64-unknown-linux-musl (static: any distribution,
# glibc or musl), x86_64/aarch64-apple-darwin (minos 11.0). Without the
# `tls` feature (probes of https:// URLs are refused with exit 78; see the
# README).
# The toolchain is installed here and cached under $PAPERCLIPD_DIST_CACHE
# (default /var/cache/paperclipd-dist): venv/ (ziglang and cargo-zigbuild
# from PyPI, pinned), target/ (CARGO_TARGET_DIR), zig-cache/; the rustup targets are
# added to the active toolchain. Needs python3 with venv, rustup, npm, and
# PyPI/crates.io/the Rust dist server on a cold cache.
# Env: PAPERCLIPD_TARGETS (default: all four), PAPERCLIPD_COMMIT (else git).
# Exit: 0 built, 1 a build or check failed, 2 setup failed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: packaging/npm/build.sh OUT}
CACHE=${PAPERCLIPD_DIST_CACHE:-/var/cache/paperclipd-dist}
ZIGLANG=0.17.0
ZIGBUILD=0.24.0
read -ra TARGETS <<<"${PAPERCLIPD_TARGETS:-x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-apple-darwin x86_64-apple-darwin}"
SCOPE=@paperclipd

T0=$SECONDS
timing() { printf '== npm/build: %s: %ss (total %ss)\n' "$1" "$2" "$((SECONDS - T0))"; }
die() { printf 'npm/build: %s\n' "$*" >&2; exit "${2:-2}"; }

for c in python3 rustup cargo npm sha256sum tar gzip; do
  command -v "$c" >/dev/null || die "needs $c on PATH"
done
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
exec 9>"$CACHE/lock"
flock -n 9 || { echo "npm/build: waiting for $CACHE/lock"; flock -w 3600 9 || die "another build holds $CACHE/lock"; }

# ------------------------------------------------------------------ toolchain
t=$SECONDS
VENV=$CACHE/venv
STAMP="ziglang==$ZIGLANG cargo-zigbuild==$ZIGBUILD"
if [ "$(cat "$VENV/.paperclipd-setup" 2>/dev/null)" != "$STAMP" ]; then
  echo "npm/build: installing $STAMP into $VENV"
  rm -rf "$VENV.tmp"
  python3 -m venv "$VENV.tmp" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$VENV.tmp/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIGLANG" "cargo-zigbuild==$ZIGBUILD" \
    || die "pip install of $STAMP failed"
  echo "$STAMP" >"$VENV.tmp/.paperclipd-setup"
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  # venv scripts name their interpreter by absolute path: fix after the move.
  sed -i "1s|^#!.*/venv.tmp/bin/python|#!$VENV/bin/python|" "$VENV"/bin/*
fi
# cargo-zigbuild finds zig as `python3 -m ziglang` of this venv.
export PATH=$VENV/bin:$PATH
installed=$(rustup target list --installed)
missing=()
for tg in "${TARGETS[@]}"; do grep -qx "$tg" <<<"$installed" || missing+=("$tg"); done
if [ ${#missing[@]} -gt 0 ]; then
  rustup target add "${missing[@]}" || die "rustup target add ${missing[*]} failed"
fi
timing "toolchain" "$((SECONDS - t))"

# ------------------------------------------------------------------ binaries
cd "$REPO"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
if [ -z "${PAPERCLIPD_COMMIT:-}" ] && git rev-parse --show-toplevel >/dev/null 2>&1; then
  PAPERCLIPD_COMMIT=$(git rev-parse --short=12 HEAD)
fi
export PAPERCLIPD_COMMIT=${PAPERCLIPD_COMMIT:-unknown}
# Reproducible archives: file times are the commit's time.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || stat -c %Y Cargo.toml)
export SOURCE_DATE_EPOCH
# Zig's default minimum macOS is its newest; 11.0 is the first arm64 macOS.
export MACOSX_DEPLOYMENT_TARGET=11.0
export CARGO_TARGET_DIR=$CACHE/target
# Zig's libc builds (musl, the macOS stubs) are cached here too.
export ZIG_GLOBAL_CACHE_DIR=$CACHE/zig-cache ZIG_LOCAL_CACHE_DIR=$CACHE/zig-cache
rm -rf "$OUT/bin" "$OUT/dist" "$OUT/npm" "$OUT/SHA256SUMS"
mkdir -p "$OUT/bin" "$OUT/dist" "$OUT/npm"
for tg in "${TARGETS[@]}"; do
  t=$SECONDS
  cargo zigbuild --release --locked --quiet --target "$tg" \
    || die "cargo zigbuild --target $tg failed" 1
  install -m 755 "$CARGO_TARGET_DIR/$tg/release/paperclipd" "$OUT/bin/paperclipd-$tg"
  timing "binary $tg ($(stat -c %s "$OUT/bin/paperclipd-$tg") bytes)" "$((SECONDS - t))"
done

# The binary that runs here renders the man page and completions (the same
# clap definitions on every target) and is checked to name its target.
case "$(uname -m)" in
  x86_64) host=x86_64-unknown-linux-musl ;;
  aarch64) host=aarch64-unknown-linux-musl ;;
  *) host= ;;
esac
[ -n "$host" ] && [ -x "$OUT/bin/paperclipd-$host" ] || die "the binary for this machine ($(uname -m)) was not built" 1
v=$("$OUT/bin/paperclipd-$host" --version)
[ "$v" = "paperclipd $VERSION ($host, commit $PAPERCLIPD_COMMIT)" ] || die "unexpected --version: $v" 1
echo "npm/build: $v"
packaging/build-assets.sh "$OUT/bin/paperclipd-$host" 2>/dev/null

# ------------------------------------------------------------------ archives
t=$SECONDS
for tg in "${TARGETS[@]}"; do
  name=paperclipd-$VERSION-$tg
  stage=$(mktemp -d)
  mkdir -p "$stage/$name/completions"
  install -m 755 "$OUT/bin/paperclipd-$tg" "$stage/$name/paperclipd"
  cp target/assets/paperclipd.1.gz "$stage/$name/"
  cp target/assets/completions/* "$stage/$name/completions/"
  cp README.md "$stage/$name/"
  tar -C "$stage" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -cf - "$name" | gzip -9n >"$OUT/dist/$name.tar.gz"
  rm -rf "$stage"
done
# The Homebrew formula with these archives' sha256.
grep -q "version \"$VERSION\"" packaging/homebrew/paperclipd.rb \
  || die "packaging/homebrew/paperclipd.rb is not at version $VERSION" 1
formula=$(cat packaging/homebrew/paperclipd.rb)
for tg in "${TARGETS[@]}"; do
  sum=$(sha256sum "$OUT/dist/paperclipd-$VERSION-$tg.tar.gz" | cut -d' ' -f1)
  formula=${formula//@SHA256_$tg@/$sum}
done
if grep -q '@SHA256_' <<<"$formula"; then
  echo "npm/build: not all targets built: no Homebrew formula" >&2
else
  printf '%s\n' "$formula" >"$OUT/dist/paperclipd.rb"
fi
timing "archives" "$((SECONDS - t))"

# ------------------------------------------------------------------ npm
t=$SECONDS
# target triple -> npm os, cpu
npm_platform() {
  case "$1" in
    x86_64-unknown-linux-musl) echo "linux x64" ;;
    aarch64-unknown-linux-musl) echo "linux arm64" ;;
    x86_64-apple-darwin) echo "darwin x64" ;;
    aarch64-apple-darwin) echo "darwin arm64" ;;
    *) die "no npm platform for $1" ;;
  esac
}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
optional=()
for tg in "${TARGETS[@]}"; do
  read -r os cpu <<<"$(npm_platform "$tg")"
  pkg=$SCOPE/$os-$cpu
  d=$stage/$os-$cpu
  mkdir -p "$d/bin"
  install -m 755 "$OUT/bin/paperclipd-$tg" "$d/bin/paperclipd"
  # The Linux binaries are static: glibc and musl systems alike.
  libc=
  [ "$os" = linux ] && libc='"libc": ["glibc", "musl"],'
  cat >"$d/package.json" <<JSON
{
  "name": "$pkg",
  "version": "$VERSION",
  "description": "The paperclipd binary for $os-$cpu ($tg). Install the paperclipd package, not this one.",
  "license": "MIT OR Apache-2.0",
  "homepage": "https://github.com/paperclipai/paperclipd",
  "repository": { "type": "git", "url": "git+https://github.com/paperclipai/paperclipd.git" },
  "os": ["$os"],
  "cpu": ["$cpu"],
  $libc
  "files": ["bin/paperclipd"],
  "preferUnplugged": true
}
JSON
  printf '# %s\n\nThe `paperclipd` binary for %s-%s (`%s`), commit %s.\nInstall it with `npm install -g paperclipd`, which picks this package on this platform.\n' \
    "$pkg" "$os" "$cpu" "$tg" "$PAPERCLIPD_COMMIT" >"$d/README.md"
  optional+=("\"$pkg\": \"$VERSION\"")
done
d=$stage/main
mkdir -p "$d/bin"
install -m 755 packaging/npm/paperclipd.js "$d/bin/paperclipd.js"
cp README.md "$d/"
deps=$(IFS=,; echo "${optional[*]}" | sed 's/,/,\n    /g')
cat >"$d/package.json" <<JSON
{
  "name": "paperclipd",
  "version": "$VERSION",
  "description": "Run a Paperclip instance as a trustworthy service: one server per instance, ready only when it truly is",
  "license": "MIT OR Apache-2.0",
  "homepage": "https://github.com/paperclipai/paperclipd",
  "repository": { "type": "git", "url": "git+https://github.com/paperclipai/paperclipd.git" },
  "keywords": ["paperclip", "paperclipai", "systemd", "launchd", "service"],
  "bin": { "paperclipd": "bin/paperclipd.js" },
  "files": ["bin/paperclipd.js"],
  "os": ["linux", "darwin"],
  "engines": { "node": ">=18" },
  "optionalDependencies": {
    $deps
  }
}
JSON
for d in "$stage"/*/; do
  (cd "$OUT/npm" && npm pack --silent "$d" >/dev/null) || die "npm pack $d failed" 1
done
timing "npm packages" "$((SECONDS - t))"

(cd "$OUT" && find bin dist npm -type f | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo "npm/build: built $VERSION ($PAPERCLIPD_COMMIT) in $((SECONDS - T0))s:"
(cd "$OUT" && find . -type f | LC_ALL=C sort | sed 's|^\./|  |')
