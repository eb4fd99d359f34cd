#!/usr/bin/env bash
# `make demo`: a test site, an itemsaver, two workers and the engine, with the
# command lines of docs/getting-started.md, on this machine's loopback.
set -euo pipefail
# The binaries are where cargo put them (CARGO_TARGET_DIR, when set).
target=${CARGO_TARGET_DIR:-target}
bin=${BIN:-$target/debug}
out=${DEMO_DIR:-$target/demo}
pages=${DEMO_PAGES:-500}
mkdir -p "$out"
rm -f "$out"/items.db "$out"/items.db-wal "$out"/items.db-shm

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Starts a server in the background and waits for its "listening on" line.
start() {
  local name=$1; shift
  local log="$out/$name.log"
  : > "$log.out"
  "$@" > "$log.out" 2> "$log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q '^listening on' "$log.out"; then echo "  $name: $(head -1 "$log.out")"; return 0; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "$name failed to start:"; cat "$log"; exit 1; fi
    sleep 0.1
  done
  echo "$name did not start in time"; cat "$log"; exit 1
}

echo "starting the demo ($pages-page test site; logs in $out/):"
start testsite  "$bin/testsite" --port 8000 --pages "$pages"
start itemsaver "$bin/itemsaver" --port=1234 --store "$out/items.db"
# The test site is on 127.0.0.1, which workers refuse by default (their SSRF guard).
start worker-0  "$bin/worker" --port=9000 --allow_private
start worker-1  "$bin/worker" --port=9001 --allow_private
echo
echo "engine --itemsaver_host=\":1234\" --worker_hosts=\":9000,:9001\" --seed http://127.0.0.1:8000/"
"$bin/engine" --itemsaver_host=":1234" --worker_hosts=":9000,:9001" --seed http://127.0.0.1:8000/ --jobs "$out/jobs.db"
echo
echo "items are in $out/items.db; the first three:"
"$bin/itemsaver" export --store "$out/items.db" | head -3
echo "(all of them: $bin/itemsaver export --store $out/items.db [--format csv])"
