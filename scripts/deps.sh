#!/usr/bin/env bash
# The one list of system packages Spinneret's tests need, and the one place that installs them.
# `make test` runs it first; `make demo` needs none of them (only the Rust toolchain).
#
#   scripts/deps.sh           install what is missing (as root, or through `sudo -n`), quietly
#   scripts/deps.sh --check   install nothing: exit 1 with the command to run if anything is missing
#
# A package counts as present when dpkg says it is installed; on a system without dpkg, when the
# program it provides is on PATH. When nothing is missing it makes no apt call at all.
set -euo pipefail

# package          program it provides ("-" when it has none on PATH)   why
PACKAGES=(
  "chromium        chromium        the dashboard and rendering tests drive a headless browser"
  "chromium-driver chromedriver    ...through WebDriver"
  "procps          kill            the fault tests stop, continue and kill processes"
  "redis-server    redis-server    cluster mode is tested against a real Redis"
  "redis-tools     redis-cli       ...and a Redis Cluster made with redis-cli --cluster create"
  "openssl         openssl         the certificate recipe (scripts/certs.sh, docs/across-machines.md) is tested"
  "postgresql      -               the PostgreSQL item store is tested against a real server"
  "python3-venv    -               WARC archives are checked with warcio in a virtual environment"
  "prometheus      promtool        every /metrics endpoint is checked with promtool check metrics"
  "curl            curl            the walkthrough of docs/deployment.md is run as written"
)

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  *) echo "usage: scripts/deps.sh [--check]" >&2; exit 2 ;;
esac

installed() {
  local pkg=$1 program=$2
  if command -v dpkg-query >/dev/null 2>&1; then
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ]
  else
    [ "$program" != "-" ] && command -v "$program" >/dev/null 2>&1
  fi
}

missing=()
for entry in "${PACKAGES[@]}"; do
  read -r pkg program _ <<<"$entry"
  installed "$pkg" "$program" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

instruction="missing system packages for the tests (${missing[*]}): run \`make deps\` as root, or \`sudo apt-get update && sudo apt-get install -y ${missing[*]}\`"
if [ "$check_only" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$instruction" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "$instruction" >&2
  exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/spinneret-deps.XXXXXX")
echo "installing system packages for the tests: ${missing[*]} (log: $log)"
export DEBIAN_FRONTEND=noninteractive
# A fresh Debian machine has empty package lists: update once, then install.
if ! { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "installing ${missing[*]} failed (full log: $log); $instruction" >&2
  exit 1
fi
rm -f "$log"
