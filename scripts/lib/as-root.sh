# Sourced by the scripts that load BPF programs or manage cgroups: re-runs the calling script as
# root through sudo when it is not root already.
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "$0: run as root" >&2; exit 1; }
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
