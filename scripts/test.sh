#!/usr/bin/env bash
# Runs every test: unit tests of the pure parts, and end-to-end tests that load the real BPF
# programs, guard real cgroups and run real tools (curl, python3, bash) against test hosts in a
# network namespace. Needs root; installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/as-root.sh

# One run at a time: two would share the test network, ports, pins and cgroups, and each one's
# cleanup would take down the other's daemons.
exec 9>/run/bordergate-test.lock
flock -n 9 || { echo "test: another test run holds /run/bordergate-test.lock; waiting for it" >&2; flock 9; }

scripts/setup.sh 9>&-
cleanup() {
  scripts/testnet.sh down bge2e >/dev/null 2>&1 || true
  # daemons, guards and cgroups a crashed test may have left
  # (only if the pid is still a bordergate: a file left from an earlier boot may name anything)
  for pidfile in /tmp/bge2e-*/daemon.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in */bordergate) kill -9 "$pid" 2>/dev/null ;; esac
    rm -rf "$(dirname "$pidfile")"
  done
  for pin in /sys/fs/bpf/bge2e_*; do [ -e "$pin" ] && .build/debug/bordergate detach --all --pin-root "$pin" >/dev/null 2>&1; done
  cg=$(grep ' - cgroup2 ' /proc/self/mountinfo | head -n 1 | awk '{print $5}')
  [ -n "$cg" ] && find "$cg/bge2e" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
  [ -n "$cg" ] && rmdir "$cg/bge2e" "$cg"/bordergate/exec-* 2>/dev/null || true
  return 0
}
trap cleanup EXIT
cleanup
swift test "$@" 9>&-  # the lock stays with this shell, not with what the tests leave running
# The whole suite (no filter) also fuzzes every parser for 20 s each; a finding fails the run.
[ $# -gt 0 ] || scripts/fuzz --seconds "${BG_FUZZ_SECONDS:-20}" 9>&-
