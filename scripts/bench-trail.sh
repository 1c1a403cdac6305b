#!/usr/bin/env bash
# Benchmark of trail-ingest's parsing path (gunzip + split + normalise +
# rules) on one synthetic CloudTrail file, side by side with
#   - `zcat file > /dev/null`: the floor, decompression alone;
#   - Python: gzip.open + json.load + a simple normalise/rules loop, the
#     obvious way to write it.
#
#   scripts/bench-trail.sh [uncompressed-MB]     (default 1024)
#
# The file is generated once (deterministic) as
# $CARGO_TARGET_DIR/bench-trail/trail-<MB>MB.json.gz (target/ by default)
# and reused. MB = 10^6 bytes.
# BENCH_PYTHON=0 skips the Python baseline; it is also skipped when it would
# not fit in memory (json.load holds the whole document, ~8x the JSON size).
set -euo pipefail

cd "$(dirname "$0")/.."
MB="${1:-1024}"
case "$MB" in '' | *[!0-9]*) echo "usage: $0 [uncompressed-MB]" >&2; exit 2 ;; esac

PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

TARGET="${CARGO_TARGET_DIR:-target}"
DIR="$TARGET/bench-trail"
FILE="$DIR/trail-${MB}MB.json.gz"
mkdir -p "$DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "== build"
cargo build --release -q -p trail-ingest --example gen_trail --example bench_parse
BIN="$TARGET/release/examples"

if [ ! -s "$FILE" ]; then
    echo "== generate $FILE"
    "$BIN/gen_trail" "$FILE.tmp" "$MB"
    mv "$FILE.tmp" "$FILE"
fi
echo "file: $FILE ($(du -m "$FILE" | cut -f1) MB compressed)"

# measure NAME CMD...: runs CMD, records wall seconds and peak RSS (kB) in
# $TMP/NAME.{sec,rss}, its stdout in $TMP/NAME.out.
measure() {
    local name="$1"
    shift
    if [ -x /usr/bin/time ]; then
        local start end
        start="$(date +%s.%N)"
        /usr/bin/time -v -o "$TMP/$name.time" "$@" >"$TMP/$name.out"
        end="$(date +%s.%N)"
        awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }' >"$TMP/$name.sec"
        awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/$name.time" >"$TMP/$name.rss"
    else
        "$PY" - "$TMP/$name" "$@" >"$TMP/$name.out" <<'EOF'
import resource, subprocess, sys, time
prefix, cmd = sys.argv[1], sys.argv[2:]
t = time.monotonic()
subprocess.run(cmd, check=True)
t = time.monotonic() - t
open(prefix + ".sec", "w").write("%.3f\n" % t)
open(prefix + ".rss", "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
EOF
    fi
}

echo "== zcat"
measure zcat sh -c 'zcat "$1" > /dev/null' sh "$FILE"

echo "== kopter bench_parse, by stage (best of 3; stages are single-threaded)"
"$BIN/bench_parse" --split --repeat 3 "$FILE" | grep -v '^RESULT'

echo "== kopter bench_parse"
measure kopter "$BIN/bench_parse" "$FILE"
cat "$TMP/kopter.out"
RESULT="$(grep '^RESULT ' "$TMP/kopter.out")"
RECORDS="$(sed -E 's/.*records=([0-9]+).*/\1/' <<<"$RESULT")"
BYTES="$(sed -E 's/.*bytes=([0-9]+).*/\1/' <<<"$RESULT")"

cat >"$TMP/baseline.py" <<'EOF'
import gzip, json, sys
from datetime import datetime

def normalise(r):
    ui = r.get("userIdentity") or {}
    arn = ui.get("arn")
    if not arn and ui.get("type") == "Root" and ui.get("accountId"):
        arn = "arn:aws:iam::%s:root" % ui["accountId"]
    if not arn:
        arn = ui.get("invokedBy")
    resp = r.get("responseElements")
    extra = r.get("additionalEventData")
    return {
        "event_id": r["eventID"],
        "event_time": datetime.fromisoformat(r["eventTime"].replace("Z", "+00:00")),
        "event_source": r["eventSource"],
        "event_name": r["eventName"],
        "aws_region": r["awsRegion"],
        "recipient_account": r.get("recipientAccountId"),
        "principal_arn": arn,
        "principal_type": ui.get("type"),
        "error_code": r.get("errorCode"),
        "resources": [x.get("ARN") for x in r.get("resources") or [] if x.get("ARN")],
        "raw": json.dumps(r),
        "mfa_used": (extra or {}).get("MFAUsed") if isinstance(extra, dict) else None,
        "console_login": resp.get("ConsoleLogin") if isinstance(resp, dict) else None,
    }

def findings(n):
    f = 0
    f += n["principal_type"] == "Root"
    f += n["event_name"] == "ConsoleLogin" and n["console_login"] == "Success" and n["mfa_used"] != "Yes"
    f += n["event_name"] == "ConsoleLogin" and n["console_login"] == "Failure"
    f += n["event_name"] in ("StopLogging", "DeleteTrail", "UpdateTrail") and not n["error_code"]
    f += n["event_name"] in ("CreateAccessKey", "CreateUser", "AttachUserPolicy", "PutUserPolicy") and not n["error_code"]
    return f

with gzip.open(sys.argv[1], "rb") as fh:
    doc = json.load(fh)
records = found = 0
for r in doc["Records"]:
    records += 1
    found += findings(normalise(r))
print("records", records, "findings", found)
EOF

RUN_PY=1
if [ "${BENCH_PYTHON:-1}" = 0 ]; then
    RUN_PY=0
    echo "== python: skipped (BENCH_PYTHON=0)"
else
    AVAIL_KB="$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)"
    NEED_KB=$((BYTES / 1024 * 8))
    if [ "$NEED_KB" -gt "$AVAIL_KB" ]; then
        RUN_PY=0
        echo "== python: skipped (json.load needs ~$((NEED_KB / 1048576)) GB, $((AVAIL_KB / 1048576)) GB available)"
    else
        echo "== python ($("$PY" --version 2>&1)) json.load"
        measure python "$PY" "$TMP/baseline.py" "$FILE"
        cat "$TMP/python.out"
    fi
fi

row() { # name label
    local sec rss
    sec="$(cat "$TMP/$1.sec")"
    rss="$(cat "$TMP/$1.rss")"
    awk -v l="$2" -v s="$sec" -v r="$RECORDS" -v b="$BYTES" -v m="$rss" \
        'BEGIN { printf "| %-36s | %8.2f | %12.0f | %8.1f | %11.1f |\n", l, s, r / s, b / 1e6 / s, m / 1024 }'
}

echo
echo "$RECORDS records, $(awk -v b="$BYTES" 'BEGIN { printf "%.0f", b / 1e6 }') MB uncompressed, $(nproc) cores"
echo
echo "| run                                  | wall s   | records/s    | MB/s     | peak RSS MB |"
echo "|--------------------------------------|----------|--------------|----------|-------------|"
row zcat "zcat > /dev/null (floor)"
row kopter "kopter gunzip+split+normalise+rules"
[ "$RUN_PY" = 1 ] && row python "python gzip+json.load+normalise"
echo
awk -v k="$(cat "$TMP/kopter.sec")" -v z="$(cat "$TMP/zcat.sec")" \
    'BEGIN { printf "kopter / zcat wall time: %.2fx\n", k / z }'
if [ "$RUN_PY" = 1 ]; then
    awk -v k="$(cat "$TMP/kopter.sec")" -v p="$(cat "$TMP/python.sec")" \
        'BEGIN { printf "kopter / python throughput: %.1fx\n", p / k }'
fi
