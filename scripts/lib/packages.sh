#!/usr/bin/env bash
# Installs the Debian packages named that are missing (apt-get only), without starting the
# services they bring (nginx, haproxy: the bench and tests start their own, on their own ports).
#   scripts/lib/packages.sh WHO PACKAGE...     WHO prefixes the messages ("setup", "bench")
# Does nothing, and needs no network, when everything is installed.
set -euo pipefail
who=$1; shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "$who: missing ${missing[*]}; only apt-get is known here: install them with your package manager" >&2; exit 1; }
echo "$who: installing ${missing[*]}"
# invoke-rc.d asks policy-rc.d whether to start a service; 101 is "no"
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT # also when interrupted
fi
if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null; }; then
  echo "$who: could not install ${missing[*]} (no network to the package mirror?); install them and run again" >&2
  exit 1
fi
