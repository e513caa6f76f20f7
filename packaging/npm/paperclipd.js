#!/usr/bin/env node
// paperclipd's npm launcher: finds the native binary of this platform's
// package (an optional dependency) and replaces this node process with it.
'use strict';

const PACKAGES = {
  'linux-x64': '@paperclipd/linux-x64',
  'linux-arm64': '@paperclipd/linux-arm64',
  'darwin-x64': '@paperclipd/darwin-x64',
  'darwin-arm64': '@paperclipd/darwin-arm64',
};

function fail(msg, code) {
  process.stderr.write(`paperclipd: ${msg}\n`);
  process.exit(code);
}

const platform = `${process.platform}-${process.arch}`;
const pkg = PACKAGES[platform];
if (!pkg) {
  fail(
    `no prebuilt binary for ${platform}; expected one of ${Object.keys(PACKAGES).join(', ')}; ` +
      'build it from source: cargo install --locked --git https://github.com/paperclipai/paperclipd',
    127,
  );
}
let bin;
try {
  bin = require.resolve(`${pkg}/bin/paperclipd`);
} catch {
  fail(
    `the package ${pkg} with the binary for ${platform} is not installed ` +
      '(npm installs it as an optional dependency: was --omit=optional or --no-optional used?); ' +
      'reinstall with: npm install -g paperclipd',
    127,
  );
}
const args = process.argv.slice(2);

if (typeof process.execve === 'function') {
  // Node >= 22.15 / 23.11: the same process becomes paperclipd, so nothing
  // sits between it and the terminal or the service manager.
  try {
    process.execve(bin, [bin, ...args], process.env);
  } catch (e) {
    fail(`cannot run ${bin}: ${e.message}; reinstall with: npm install -g paperclipd`, 126);
  }
}

// Older Node: run it as a child with the terminal (stdio) inherited, hand
// on the stop signals sent to this process alone, and exit as it did.
const { spawn } = require('node:child_process');
const child = spawn(bin, args, { stdio: 'inherit' });
const forwarded = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];
const forward = (sig) => {
  try {
    child.kill(sig);
  } catch {
    // already gone: its exit is reported below
  }
};
for (const sig of forwarded) process.on(sig, forward);
child.on('error', (e) => fail(`cannot run ${bin}: ${e.message}; reinstall with: npm install -g paperclipd`, 126));
child.on('exit', (code, signal) => {
  for (const sig of forwarded) process.removeListener(sig, forward);
  if (signal) {
    // Die of the same signal, so our parent sees what the child saw.
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(128 + (require('node:os').constants.signals[signal] || 0)), 1000).unref();
  } else {
    process.exit(code ?? 1);
  }
});
