#!/usr/bin/env bash
# Faults and soak at scale (issue 15): the #[ignore]d scenarios of
# tests/scale.rs, with real ssh, sshd, SeaweedFS and the gatehouse binary.
# Needs root, like ./dev/test (it creates the test user and runs sshd).
#
#   sudo bench/scale.sh                 # kill -9 (50 sessions), S3 outage (20 x 120 s), soak (500 x 30 min)
#   sudo bench/scale.sh kill_9 s3_outage
#   GH_SOAK_SESSIONS=100 GH_SOAK_MINUTES=5 sudo -E bench/scale.sh soak
#
# Sizes come from the environment: GH_SCALE_SESSIONS (kill_9: 50,
# s3_outage: 20), GH_SCALE_OUTAGE_S (120), GH_SOAK_SESSIONS (500),
# GH_SOAK_MINUTES (30). Each scenario prints one `SCALE {json}` line;
# they are collected in bench/out/scale.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(kill_9 s3_outage soak)
mkdir -p bench/out
out=bench/out/scale.jsonl
# Build once, then run the test binary itself: a long soak does not hold
# cargo's lock on the target directory.
exe=$(cargo test --locked --test scale --no-run --message-format=json \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "scale" and m.get("executable"):
        print(m["executable"])')
[ -x "$exe" ] || { echo "could not build tests/scale.rs" >&2; exit 1; }
for s in "${scenarios[@]}"; do
    case $s in
        kill_9) test=kill_9_with_live_recorded_sessions ;;
        s3_outage) test=s3_outage_under_best_effort_sessions ;;
        soak) test=soak ;;
        *) echo "unknown scenario $s (kill_9, s3_outage, soak)" >&2; exit 2 ;;
    esac
    echo "== $s ($(date -u +%H:%M:%S))"
    log=$(mktemp)
    status=0
    "$exe" --ignored --exact "$test" --nocapture 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
    grep '^SCALE ' "$log" | sed "s/^SCALE //" | while read -r line; do
        printf '{"at":"%s","commit":"%s","exit":%d,"run":%s}\n' \
            "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD)" "$status" "$line" >> "$out"
    done
    rm -f "$log"
done
echo "results: $out"
