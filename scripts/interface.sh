#!/usr/bin/env bash
# scripts/interface.sh BIN OUT: snapshots what users see of one build, to diff two builds
# across a change meant to keep behaviour: each binary's flags (sorted, so that a regrouped
# --help compares equal), --print-config, the summary JSON's keys, /api/status's keys and
# the metric names of a short crawl of the test site. Needs curl and python3.
#   scripts/interface.sh /tmp/old-target/release /tmp/old && scripts/interface.sh target/debug /tmp/new
#   diff -r /tmp/old /tmp/new
set -u
bin=$1; out=$2; mkdir -p "$out"
flags() {
  python3 -c '
import re, sys
blocks, cur = [], None
for line in sys.stdin.read().split("\n"):
    if re.match(r"^\s{2,6}(-\w, )?--[\w-]+", line):
        if cur: blocks.append(cur)
        cur = [line.strip()]
    elif cur is not None and line.strip():
        if re.match(r"^\S", line): blocks.append(cur); cur = None
        else: cur.append(line.strip())
if cur: blocks.append(cur)
print("\n".join(sorted(" | ".join(b) for b in blocks)))'
}
for b in engine worker itemsaver; do
  "$bin/$b" --help 2>&1 | flags > "$out/$b.flags"
  "$bin/$b" --print-config 2>&1 | sort > "$out/$b.print-config"
done
"$bin/itemsaver" export --help 2>&1 | flags > "$out/itemsaver-export.flags"
work=$(mktemp -d)
trap 'kill $site 2>/dev/null; rm -rf "$work"' EXIT
"$bin/testsite" --port 0 --pages 60 > "$work/site.out" 2>&1 &
site=$!
for _ in $(seq 50); do grep -q "listening on" "$work/site.out" && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$work/site.out" | head -1 | cut -d: -f2)
"$bin/engine" --seed "http://127.0.0.1:$port/" --allow_private --state "$work/state" \
  --store "$work/items.db" --summary_json "$work/summary.json" --admin 127.0.0.1:0 --serve -q \
  > "$work/engine.out" 2> "$work/engine.err" &
engine=$!
admin=
for _ in $(seq 100); do
  admin=$(grep -ho 'http://127.0.0.1:[0-9]*' "$work/engine.err" "$work/engine.out" 2>/dev/null | head -1)
  [ -n "$admin" ] && break
  sleep 0.1
done
# The figures compared are the finished crawl's: wait until it is idle (it serves on).
for _ in $(seq 300); do
  curl -s "$admin/api/status" | grep -q '"state":"idle"' && break
  sleep 0.1
done
curl -s "$admin/metrics" | grep -v '^#' | sed 's/[{ ].*//' | sort -u > "$out/metric.names"
curl -s "$admin/api/status" | python3 -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin))))' > "$out/status.keys"
kill -INT "$engine"; wait "$engine"
python3 -c 'import json, sys; print("\n".join(sorted(json.load(open(sys.argv[1])))))' "$work/summary.json" > "$out/summary.keys"
