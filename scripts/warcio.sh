#!/usr/bin/env bash
# The WARC reader the tests check the archives with: the Python package warcio, in a virtual
# environment under target/ (made once; PyPI is reached only when it is missing).
#
#   scripts/warcio.sh           make target/warcio-venv if it is missing
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="${CARGO_TARGET_DIR:-$root/target}/warcio-venv"
version="1.7.5"

if [ -x "$venv/bin/warcio" ] && "$venv/bin/python" -c "import warcio" 2>/dev/null; then
  exit 0
fi
# Debian's own python3 (python3-venv comes from scripts/deps.sh), whatever a shell's PATH puts first.
python=/usr/bin/python3
[ -x "$python" ] || python=python3
log=$(mktemp "${TMPDIR:-/tmp}/spinneret-warcio.XXXXXX")
rm -rf "$venv"
if ! { "$python" -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check "warcio==$version"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "could not make $venv with warcio $version (python3 -m venv, then pip install warcio): see above" >&2
  exit 1
fi
rm -f "$log"
