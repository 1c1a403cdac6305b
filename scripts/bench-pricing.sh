#!/usr/bin/env bash
# Benchmark of the pricing service's streaming EC2 offer-file parser on one
# synthetic per-region offer file, side by side with the usual ways to read
# it:
#   - kopter:      `pricing ingest-file --dry-run FILE` (streaming, this repo);
#   - naive Rust:  whole file into a serde_json::Value, then walk it
#                  (services/pricing/examples/naive_offer.rs);
#   - json.load:   Python, whole document in memory;
#   - ijson:       Python, streaming (kvitems over products / terms.OnDemand /
#                  terms.Reserved, three passes), if ijson is installed.
# Every row counts the same prices with the same product rules; the script
# checks that they agree.
#
#   scripts/bench-pricing.sh [MB]        (default 512; MB = 10^6 bytes)
#
# The file is generated once (deterministic) as
# $CARGO_TARGET_DIR/bench-pricing/offer-<MB>MB.json (default target/) and
# reused. Each tool reports its
# own time (from start to last price, excluding process start-up) and peak
# RSS (Rust: VmHWM; Python: resource.getrusage ru_maxrss).
# PYTHON=/path/to/python overrides the interpreter (default .venv/bin/python,
# else python3). BENCH_PYTHON=0 skips both Python rows; json.load is also
# skipped when it would not fit in memory (~10x the file size).
set -euo pipefail

cd "$(dirname "$0")/.."
MB="${1:-512}"
case "$MB" in '' | *[!0-9]*) echo "usage: $0 [MB]" >&2; exit 2 ;; esac

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    PY=python3
    [ -x .venv/bin/python ] && PY=.venv/bin/python
fi

TARGET="${CARGO_TARGET_DIR:-target}"
DIR="$TARGET/bench-pricing"
FILE="$DIR/offer-${MB}MB.json"
mkdir -p "$DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "== build (release)"
cargo build --release -q -p pricing --bin pricing --example gen_offer --example naive_offer
BIN="$TARGET/release"

if [ ! -s "$FILE" ]; then
    echo "== generate $FILE"
    "$BIN/examples/gen_offer" "$FILE.tmp" "$MB"
    mv "$FILE.tmp" "$FILE"
fi
BYTES="$(stat -c %s "$FILE")"
echo "file: $FILE ($BYTES bytes)"
# Warm the page cache so the first row does not pay for the disk.
cat "$FILE" >/dev/null

# run NAME CMD...: runs CMD, keeps its output in $TMP/NAME.out and its
# RESULT line in $TMP/NAME.result.
run() {
    local name="$1"
    shift
    echo "== $name"
    if "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"; then
        grep -v '^RESULT ' "$TMP/$name.out" | sed 's/^/  /' || true
        grep '^RESULT ' "$TMP/$name.out" | tail -1 >"$TMP/$name.result"
    else
        echo "  $name failed:"
        sed 's/^/  /' "$TMP/$name.err" "$TMP/$name.out"
    fi
}

run kopter "$BIN/pricing" ingest-file --dry-run "$FILE"
run naive "$BIN/examples/naive_offer" "$FILE"

cat >"$TMP/rules.py" <<'EOF'
# The product rules of services/pricing/src/offer/parser.rs.
EBS_VOLUMES = {"gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"}

def classify(p):
    family = p.get("productFamily", "")
    a = p.get("attributes", {})
    if family in ("Compute Instance", "Compute Instance (bare metal)"):
        if a.get("capacitystatus", "Used") == "Used" and a.get("marketoption", "OnDemand") == "OnDemand":
            return "instance"
        return None
    if family == "Storage":
        return "ebs" if a.get("volumeApiName") in EBS_VOLUMES else None
    if family in ("System Operation", "Provisioned Throughput"):
        u = a.get("usagetype", "")
        if ("EBS:VolumeP-IOPS" in u or "EBS:VolumeP-Throughput" in u) and a.get("volumeApiName"):
            return "ebs"
        return None
    if family == "Dedicated Host":
        u = a.get("usagetype", "")
        if "HostUsage:" in u and "ReservedHostUsage" not in u:
            return "instance"
        return None
    if family == "Storage Snapshot":
        return "ebs" if "EBS:Snapshot" in a.get("usagetype", "") else None
    return None

class Counter:
    def __init__(self):
        self.kinds = {}
        self.on_demand = self.reserved = self.ebs = 0

    def product(self, sku, p):
        k = classify(p)
        if k:
            self.kinds[sku] = k

    def on_demand_terms(self, sku, offers):
        k = self.kinds.get(sku)
        if not k:
            return
        for offer in offers.values():
            for d in offer["priceDimensions"].values():
                float(d["pricePerUnit"]["USD"])
                if k == "instance":
                    self.on_demand += 1
                else:
                    self.ebs += 1

    def reserved_terms(self, sku, offers):
        if self.kinds.get(sku) != "instance":
            return
        for offer in offers.values():
            for d in offer["priceDimensions"].values():
                float(d["pricePerUnit"]["USD"])
            self.reserved += 1

    def result(self, started, size):
        import resource, time
        secs = time.monotonic() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("on-demand %d reserved %d ebs %d in %.2fs (%.0f MB/s), peak RSS %d MB"
              % (self.on_demand, self.reserved, self.ebs, secs, size / 1e6 / secs, rss // 1024))
        print("RESULT on_demand=%d reserved=%d ebs=%d seconds=%.3f bytes=%d rss_kb=%d"
              % (self.on_demand, self.reserved, self.ebs, secs, size, rss))
EOF

cat >"$TMP/json_load.py" <<'EOF'
import json, os, sys, time
sys.path.insert(0, os.path.dirname(__file__))
from rules import Counter
path = sys.argv[1]
started = time.monotonic()
with open(path, "rb") as f:
    doc = json.load(f)
c = Counter()
for sku, p in doc["products"].items():
    c.product(sku, p)
for sku, offers in doc["terms"].get("OnDemand", {}).items():
    c.on_demand_terms(sku, offers)
for sku, offers in doc["terms"].get("Reserved", {}).items():
    c.reserved_terms(sku, offers)
c.result(started, os.path.getsize(path))
EOF

cat >"$TMP/ijson_stream.py" <<'EOF'
import os, sys, time
sys.path.insert(0, os.path.dirname(__file__))
import ijson
from rules import Counter
path = sys.argv[1]
started = time.monotonic()
c = Counter()
# One pass per section: ijson's C-backed kvitems is much faster than a
# Python loop over parse events.
with open(path, "rb") as f:
    for sku, p in ijson.kvitems(f, "products"):
        c.product(sku, p)
with open(path, "rb") as f:
    for sku, offers in ijson.kvitems(f, "terms.OnDemand"):
        c.on_demand_terms(sku, offers)
with open(path, "rb") as f:
    for sku, offers in ijson.kvitems(f, "terms.Reserved"):
        c.reserved_terms(sku, offers)
c.result(started, os.path.getsize(path))
EOF

IJSON_NOTE=""
if [ "${BENCH_PYTHON:-1}" = 0 ]; then
    echo "== Python rows skipped (BENCH_PYTHON=0)"
elif ! command -v "$PY" >/dev/null 2>&1; then
    echo "== Python rows skipped: $PY not found"
else
    AVAIL_KB="$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)"
    if [ "$((BYTES / 1024 * 10))" -gt "${AVAIL_KB:-0}" ]; then
        echo "== json.load skipped: needs ~10x the file in memory, only $((AVAIL_KB / 1024)) MB available"
    else
        run json.load "$PY" "$TMP/json_load.py" "$FILE"
    fi
    if "$PY" -c 'import ijson' 2>/dev/null; then
        run ijson "$PY" "$TMP/ijson_stream.py" "$FILE"
    else
        IJSON_NOTE="ijson not installed in $PY: row skipped (the lead must add ijson==3.3.0 to dev/requirements.txt)"
        echo "== $IJSON_NOTE"
    fi
fi

field() { sed -E "s/.*[ ^]$2=([0-9.]+).*/\1/" <<<" $(cat "$1")"; }

echo
echo "== results ($((BYTES / 1000000)) MB file; MB/s = 10^6 bytes per second; RSS in MiB)"
printf '%-12s %9s %9s %13s %s\n' tool seconds MB/s "peak RSS MB" "prices (on-demand/reserved/EBS)"
for t in kopter naive json.load ijson; do
    r="$TMP/$t.result"
    [ -s "$r" ] || continue
    printf '%-12s %9.2f %9.0f %13.1f %s/%s/%s\n' "$t" \
        "$(field "$r" seconds)" \
        "$(awk -v b="$(field "$r" bytes)" -v s="$(field "$r" seconds)" 'BEGIN { print b / 1e6 / s }')" \
        "$(awk -v k="$(field "$r" rss_kb)" 'BEGIN { print k / 1024 }')" \
        "$(field "$r" on_demand)" "$(field "$r" reserved)" "$(field "$r" ebs)"
done
[ -n "$IJSON_NOTE" ] && printf '%-12s %s\n' ijson "(ijson not installed)"

if [ -s "$TMP/kopter.result" ]; then
    echo
    echo "== kopter vs each baseline"
    K_S="$(field "$TMP/kopter.result" seconds)"
    K_R="$(field "$TMP/kopter.result" rss_kb)"
    K_C="$(field "$TMP/kopter.result" on_demand)/$(field "$TMP/kopter.result" reserved)/$(field "$TMP/kopter.result" ebs)"
    for t in naive json.load ijson; do
        r="$TMP/$t.result"
        [ -s "$r" ] || continue
        C="$(field "$r" on_demand)/$(field "$r" reserved)/$(field "$r" ebs)"
        AGREE="counts agree"
        [ "$C" = "$K_C" ] || AGREE="COUNTS DIFFER ($C vs $K_C)"
        awk -v t="$t" -v ks="$K_S" -v kr="$K_R" -v s="$(field "$r" seconds)" -v rr="$(field "$r" rss_kb)" -v a="$AGREE" \
            'BEGIN { printf "%-12s %6.1fx faster, %7.1fx less peak memory; %s\n", t, s / ks, rr / kr, a }'
    done
fi
