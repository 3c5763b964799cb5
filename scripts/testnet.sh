#!/usr/bin/env bash
# Test hosts for Bordergate: a network namespace joined to this host by a veth pair, with addresses
# from the documentation ranges only, and real servers inside (scripts/testhost_server.py).
#
#   scripts/testnet.sh up [NAME]     create namespace NAME (default bgtest) and start its servers
#   scripts/testnet.sh down [NAME]   stop the servers and remove the namespace
#   scripts/testnet.sh status [NAME]
#
# Addresses: host side 198.51.100.1 / 2001:db8::1, test host 198.51.100.10 / 2001:db8::10
# (and 198.51.100.11, 2001:db8::11), plus 198.51.100.200 and 2001:db8:8000::10 in the upper halves,
# which residency tests map to another region than the lower ones. Servers: HTTP on 80 (GET /bytes/N, POST /sha256), and an
# "echo digest" service on 7 that reads until EOF and answers with the SHA-256 of what it read.
# Overridable by BG_NET_PREFIX4 (198.51.100) and BG_NET_PREFIX6 (2001:db8:).
set -euo pipefail

cmd=${1:-up}
name=${2:-bgtest}
p4=${BG_NET_PREFIX4:-198.51.100}
p6=${BG_NET_PREFIX6:-2001:db8:}
host_if="${name:0:8}-h"
ns_if="${name:0:8}-n"
here=$(cd "$(dirname "$0")" && pwd)
piddir=/run/bordergate-testnet
mkdir -p "$piddir"

need() { command -v "$1" >/dev/null || { echo "testnet: $1 is missing; run scripts/setup.sh (it installs $2)" >&2; exit 1; }; }

# The test host's certificates: a test CA ("Bordergate test CA") that signs the HTTPS server's
# certificate (secure.test.example, *.test.example and the test host's addresses), and a
# self-signed certificate nobody trusts. Tests name $dir/ca.pem in tls.trust.
make_tls() {
  local dir=$1
  need openssl openssl
  rm -rf "$dir"; mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=Bordergate test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=secure.test.example" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:secure.test.example,DNS:*.test.example,IP:%s.10,IP:%s:10\nextendedKeyUsage=serverAuth\n' "$p4" "$p6" >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=untrusted.test.example" \
    -addext "subjectAltName=DNS:untrusted.test.example,IP:$p4.10" -keyout "$dir/selfsigned.key" -out "$dir/selfsigned.pem" 2>/dev/null
  chmod 0644 "$dir"/*.pem
}

# A bare repository with one commit, served by git http-backend under /git/.
make_git() {
  local dir=$1
  need git git
  rm -rf "$dir"; mkdir -p "$dir"
  git init -q --bare "$dir/repo.git"
  local work; work=$(mktemp -d)
  git -C "$work" init -q
  echo "test repository" >"$work/README"
  git -C "$work" add README
  git -C "$work" -c user.name=test -c user.email=test@test.example commit -qm init
  git -C "$work" push -q "$dir/repo.git" HEAD:refs/heads/main
  git -C "$dir/repo.git" symbolic-ref HEAD refs/heads/main
  rm -rf "$work"
}

case "$cmd" in
up)
  need ip iproute2
  need sysctl procps
  need python3 python3
  [ "$(id -u)" = 0 ] || { echo "testnet: must run as root (creates network namespaces)" >&2; exit 1; }
  "$0" down "$name" >/dev/null 2>&1 || true
  # another test network on the same addresses would take this one's traffic (the first route wins)
  taken=$( { ip -o -4 addr show to "$p4.1/32"; ip -o -6 addr show to "${p6}:1/128"; } | awk '{print $2}' | head -n 1)
  if [ -n "$taken" ]; then
    echo "testnet: $p4.1 or ${p6}:1 is already on interface $taken (another test network is up): take it down (scripts/testnet.sh down NAME) or give this one other addresses (BG_NET_PREFIX4=203.0.113 BG_NET_PREFIX6=2001:db8:b:)" >&2
    exit 1
  fi
  [ -d /proc/sys/net/ipv6 ] || { echo "testnet: this kernel runs without IPv6 (booted with ipv6.disable=1?); the test hosts need it: boot without that option" >&2; exit 1; }
  ip netns add "$name"
  ip link add "$host_if" type veth peer name "$ns_if"
  # hosts that turn IPv6 off by default (net.ipv6.conf.default.disable_ipv6=1) would refuse the addresses
  sysctl -qw "net.ipv6.conf.$host_if.disable_ipv6=0"
  ip link set "$ns_if" netns "$name"
  ip netns exec "$name" sysctl -qw "net.ipv6.conf.$ns_if.disable_ipv6=0" "net.ipv6.conf.lo.disable_ipv6=0"
  ip addr add "$p4.1/24" dev "$host_if"
  ip -6 addr add "${p6}:1/64" dev "$host_if" nodad
  ip link set "$host_if" up
  ip -n "$name" link set lo up
  ip -n "$name" addr add "$p4.10/24" dev "$ns_if"
  ip -n "$name" addr add "$p4.11/24" dev "$ns_if"
  ip -n "$name" addr add "$p4.200/24" dev "$ns_if"
  ip -n "$name" -6 addr add "${p6}:10/64" dev "$ns_if" nodad
  ip -n "$name" -6 addr add "${p6}:11/64" dev "$ns_if" nodad
  ip -n "$name" -6 addr add "${p6}8000::10/64" dev "$ns_if" nodad
  ip -6 addr add "${p6}8000::1/64" dev "$host_if" nodad
  ip -n "$name" link set "$ns_if" up
  ip -n "$name" route add default via "$p4.1"
  ip -n "$name" -6 route add default via "${p6}:1"
  make_tls "$piddir/$name-tls"
  make_git "$piddir/$name-git"
  BG_UDP_ADDRESSES="$p4.10 $p4.11 $p4.200 ${p6}:10 ${p6}:11 ${p6}8000::10" \
    BG_TLS_DIR="$piddir/$name-tls" BG_GIT_ROOT="$piddir/$name-git" \
    ip netns exec "$name" python3 "$here/testhost_server.py" >"$piddir/$name.log" 2>&1 &
  echo $! >"$piddir/$name.pid"
  # wait until both services answer
  for _ in $(seq 1 100); do
    if ip netns exec "$name" python3 -c "import socket; [socket.create_connection(('127.0.0.1', p), 1).close() for p in (80, 7, 443, 8443)]" 2>/dev/null; then
      echo "testnet $name up: $p4.10 ${p6}:10 (HTTP :80, HTTPS :443 and :8443, echo-digest :7); test CA $piddir/$name-tls/ca.pem"
      exit 0
    fi
    sleep 0.1
  done
  echo "testnet: the test host's servers did not start; see $piddir/$name.log" >&2
  cat "$piddir/$name.log" >&2
  exit 1
  ;;
down)
  # every process in the namespace, not only the one we started: the namespace lives while any does
  if ip netns list 2>/dev/null | grep -qw "$name"; then
    ip netns pids "$name" 2>/dev/null | xargs -r kill 2>/dev/null || true
  fi
  if [ -f "$piddir/$name.pid" ]; then kill "$(cat "$piddir/$name.pid")" 2>/dev/null || true; rm -f "$piddir/$name.pid"; fi
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$name" 2>/dev/null || true
  ;;
status)
  ip netns list | grep -qw "$name" && echo "testnet $name: up" || { echo "testnet $name: down"; exit 1; }
  ;;
*)
  echo "usage: $0 up|down|status [NAME]" >&2
  exit 2
  ;;
esac
