#!/usr/bin/env bash
# Sets Bordergate up and shows its main job on its embedded defaults, without touching the
# internet: real tools, run under guard with an "EU only" residency policy, talk to test hosts in
# a network namespace that stand in for Germany and the US, and Bordergate shows what it allowed,
# what it refused and why.
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
mkdir -p "$BORDERGATE_STATE_DIR"

# The test hosts stand in for the world: 198.51.100.0/25 and 2001:db8::/33 are "Germany", the
# upper halves "the US". The real tables setup.sh fetched (when it could) are loaded as well.
printf '%s\n' '198.51.100.0/25,DE' '198.51.100.128/25,US' '2001:db8::/33,DE' '2001:db8:8000::/33,US' \
  >"$BORDERGATE_STATE_DIR/demo-regions.csv"
default_tables=/var/lib/bordergate/regions/default.bgrt
{
  echo "tables:"
  echo "  - path: demo-regions.csv"
  echo "    name: demo"
  if [ -s "$default_tables" ]; then echo "  - path: $default_tables"; fi
  echo "default-policy: eu-only"
  echo "policies:"
  echo "  eu-only:"
  echo "    allow:"
  echo "      - jurisdiction: EU"
  echo "    deny:"
  echo "      - host: blocked.example"
  echo "  eu-masked:"
  echo "    allow:"
  echo "      - jurisdiction: EU"
  echo "    mask:"
  echo "      detectors: all"
  echo "      fields: [password]"
  echo "    record: true"
  echo "  eu-intercepted:"
  echo "    allow:"
  echo "      - jurisdiction: EU"
  echo "    tls: intercept"
  echo "    mask:"
  echo "      detectors: all"
  echo "      fields: [password]"
  echo "    record: true"
  # the test host's HTTPS certificate comes from a test CA, as an internal service's would
  echo "tls:"
  echo "  trust: [/run/bordergate-testnet/bgdemo-tls/ca.pem]"
} >"$BORDERGATE_STATE_DIR/config.yaml"
export BORDERGATE_CONFIG="$BORDERGATE_STATE_DIR/config.yaml"

scripts/testnet.sh up bgdemo >/dev/null
trap 'scripts/testnet.sh down bgdemo' EXIT

run() { echo; echo "\$ bordergate ${*:2}"; "$@" || true; }
echo
echo "Policy eu-only: allow jurisdiction EU, deny host blocked.example ($BORDERGATE_CONFIG)."
if [ -s "$default_tables" ]; then
  run "$bin" regions lookup 198.51.100.10 198.51.100.200 3.120.0.1 52.94.76.1 2a00:1450:4001:80b::200e
else
  run "$bin" regions lookup 198.51.100.10 198.51.100.200
fi
echo
# The command runs as the user who ran sudo (exec's default), or as nobody when root ran this directly.
exec_user=${SUDO_USER:-nobody}
echo "\$ bordergate exec --user $exec_user -- bash -c 'curl http://198.51.100.10/; curl http://[2001:db8:8000::10]/; curl -H \"Host: blocked.example\" http://198.51.100.10/'"
"$bin" exec --user "$exec_user" -- bash -c 'curl -sS http://198.51.100.10/; curl -sS -g http://[2001:db8:8000::10]/; curl -sS -H "Host: blocked.example" http://198.51.100.10/' || true
run "$bin" events
echo
echo "\$ bordergate events -o json --verdict deny | sed -n 1p"
"$bin" events -o json --verdict deny | sed -n 1p  # reads everything: head could leave bordergate a SIGPIPE, failing the script under pipefail
echo
echo "Policy eu-masked also masks personal data in what the tools receive (the test host serves some):"
echo "\$ bordergate exec --user $exec_user --policy eu-masked -- curl -s http://198.51.100.10/pii.json"
"$bin" exec --quiet --user "$exec_user" --policy eu-masked -- curl -sS http://198.51.100.10/pii.json || true
echo "\$ bordergate events -o json | grep '\"type\":\"mask\"'"
"$bin" events -o json | grep '"type":"mask"' || true
echo
echo "Policy eu-intercepted does the same inside HTTPS: the proxy terminates TLS with a local CA, which"
echo "exec makes the tool trust (its own view of the system CA bundle), so curl needs no flag:"
echo "\$ bordergate exec --user $exec_user --policy eu-intercepted -- curl -s https://198.51.100.10/pii.json"
"$bin" exec --quiet --user "$exec_user" --policy eu-intercepted -- curl -sS https://198.51.100.10/pii.json || true
echo
echo "Both are recorded as the tool saw them (the policies have record: true):"
run "$bin" sessions list
session=$("$bin" sessions list -o json | tail -n 1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["id"])' 2>/dev/null || true)
if [ -n "$session" ]; then run "$bin" sessions show "$session"; fi
echo
echo "Next: write /etc/bordergate/config.yaml, run 'sudo $bin daemon', then 'sudo $bin attach /your/ci/cgroup --policy NAME' and 'sudo $bin events -f'."
