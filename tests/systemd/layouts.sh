# Fake Node.js version-manager layouts for the scenarios (sourced after
# lib.sh): real directory trees as nvm and fnm make them, each with a `node`
# script that answers `--version` and otherwise becomes the fixture server,
# recording which node ran, the PATH and PAPERCLIP_HOME it saw.

SHIM=$HOME/.local/bin/paperclipai

# fake_node PATH VERSION
fake_node() {
  mkdir -p "$(dirname "$1")"
  cat >"$1" <<NODE
#!/bin/bash
[[ \$1 == --version ]] && { echo $2; exit 0; }
id=default
while ((\$#)); do [[ \$1 == --instance ]] && id=\$2; shift; done
d=$STATE_ROOT/\$id
mkdir -p "\$d"
printf '%s\n' "\$0" >"\$d/node"
printf '%s\n' "\$PATH" >"\$d/path"
printf '%s\n' "\$PAPERCLIP_HOME" >"\$d/home"
exec "$PYTHON3" "$FIXTURE" --port "\$(cat "\$PAPERCLIP_HOME/instances/\$id/fixture.port")" --state-dir "\$d"
NODE
  chmod 755 "$1"
}

# The paperclipai shim as npm links it: `#!/usr/bin/env node`.
make_shim() {
  mkdir -p "$(dirname "$SHIM")"
  printf '#!/usr/bin/env node\nimport("./x.js")\n' >"$SHIM"
  chmod 755 "$SHIM"
}

NVM_BIN=$HOME/.nvm/versions/node/v24.11.1/bin
FNM_VERSION_DIR=$HOME/.local/share/fnm/node-versions/v24.12.0/installation
# fnm's per-shell link: $XDG_RUNTIME_DIR/fnm_multishells/<pid>_<ts> → the version.
FNM_SHELL=$XDG_RUNTIME_DIR/fnm_multishells/4242_1765000000000
make_layouts() {
  fake_node "$NVM_BIN/node" v24.11.1
  fake_node "$FNM_VERSION_DIR/bin/node" v24.12.0
  mkdir -p "$(dirname "$FNM_SHELL")"
  ln -sfn "$FNM_VERSION_DIR" "$FNM_SHELL"
  make_shim
}

# onboarded HOME ID PORT — an onboarded instance (config.json) whose fake
# node serves on PORT.
onboarded() {
  local dir=$1/instances/$2
  mkdir -p "$dir"
  printf '{"server":{"host":"127.0.0.1","port":%s}}\n' "$3" >"$dir/config.json"
  echo "$3" >"$dir/fixture.port"
  DUMP_IDS+=("$2")
}
