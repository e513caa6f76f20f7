#!/usr/bin/env bash
# Renders what packages ship besides the binary, from the one source of
# truth: the unit templates in units/ (with the packaged binary path) and
# the man page and completions generated from the clap definitions.
# Also puts BINARY where the .deb and .rpm take it (Cargo.toml's
# package.metadata): target/dist/paperclipd.
#   packaging/build-assets.sh [BINARY]   -> target/assets/, target/dist/paperclipd
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/paperclipd}
[[ -x $bin ]] || cargo build --release --locked
out=target/assets
rm -rf "$out"
mkdir -p "$out/user" "$out/system" "$out/completions"
# The start limit from its one constant (as `unit::render` fills it in).
limit() { sed -n "s/^pub const $1: [a-z0-9]* = \([0-9]*\);$/\1/p" src/config/mod.rs; }
burst=$(limit START_LIMIT_BURST) interval=$(limit START_LIMIT_INTERVAL_SECS)
[[ $burst && $interval ]] || { echo "build-assets: no START_LIMIT_* constants in src/config/mod.rs" >&2; exit 1; }
for scope in user system; do
  # Packaged units run /usr/bin/paperclipd and carry no per-user environment.
  sed -e 's|@PAPERCLIPD@|/usr/bin/paperclipd|' -e '/^@ENVIRONMENT@$/d' \
    -e "s|@START_LIMIT_BURST@|$burst|" -e "s|@START_LIMIT_INTERVAL@|$interval|" \
    "units/systemd/$scope/paperclip@.service" >"$out/$scope/paperclip@.service"
done
"$bin" manpage | gzip -9n >"$out/paperclipd.1.gz"
"$bin" completions bash >"$out/completions/paperclipd.bash"
"$bin" completions zsh >"$out/completions/_paperclipd"
"$bin" completions fish >"$out/completions/paperclipd.fish"
install -D -m 755 "$bin" target/dist/paperclipd
echo "assets in $out:" >&2
find "$out" -type f | sort >&2
