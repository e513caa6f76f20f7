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
for scope in user system; do
  # Packaged units run /usr/bin/paperclipd and carry no per-user environment.
  sed -e 's|@PAPERCLIPD@|/usr/bin/paperclipd|' -e '/^@ENVIRONMENT@$/d' \
    "units/systemd/$scope/paperclip@.service" >"$out/$scope/paperclip@.service"
done
"$bin" manpage | gzip -9n >"$out/paperclipd.1.gz"
"$bin" completions bash >"$out/completions/paperclipd.bash"
"$bin" completions zsh >"$out/completions/_paperclipd"
"$bin" completions fish >"$out/completions/paperclipd.fish"
install -D -m 755 "$bin" target/dist/paperclipd
echo "assets in $out:" >&2
find "$out" -type f | sort >&2
