#!/usr/bin/env bash
# Sets Bordergate up and shows its main job on its embedded defaults, without touching the
# internet: a real curl, run under guard, talks to a test host in a network namespace, and
# Bordergate shows what it saw: the process, the destination, the bytes, how it ended.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/as-root.sh

scripts/setup.sh
bin=.build/debug/bordergate

# A private state directory and pin root, so the demo never disturbs a running daemon.
export BORDERGATE_STATE_DIR=${BORDERGATE_STATE_DIR:-/tmp/bordergate-quickstart}
export BORDERGATE_PIN_ROOT=${BORDERGATE_PIN_ROOT:-/sys/fs/bpf/bordergate_quickstart}
export BORDERGATE_CONTROL_SOCKET=${BORDERGATE_CONTROL_SOCKET:-/tmp/bordergate-quickstart.sock}
rm -rf "$BORDERGATE_STATE_DIR"

scripts/testnet.sh up bgdemo >/dev/null
trap 'scripts/testnet.sh down bgdemo' EXIT

echo
echo "\$ bordergate exec -- bash -c 'curl -sS http://198.51.100.10/ && curl -sS -g http://[2001:db8::10]/peer'"
"$bin" exec -- bash -c 'curl -sS http://198.51.100.10/ && curl -sS -g http://[2001:db8::10]/peer'
echo
echo "\$ bordergate events        # the audit log, one line per event"
"$bin" events
echo
echo "\$ bordergate events -o json --type close | head -1"
"$bin" events -o json --type close | head -1
echo
echo "Next: run 'sudo $bin daemon', then 'sudo $bin attach /your/ci/cgroup' and 'sudo $bin events -f'."
