# preload_json_many: 40 processes exit at about the same moment with HAKMEM_DEBUG=json and
# one shared stderr (nginx's workers at a reload do this). Each report is one line and must
# reach the file whole: every line parses as JSON (python3, ARGS), and there are at least 40
# (the sleeps; the shell may add one). Failed about 2 runs in 3 when the report went out in 1 KiB pieces.
. "$(dirname "$0")/lib.sh"
PY=$1
for round in 1 2 3; do
    HAKMEM_DEBUG=json LD_PRELOAD="$LIB" sh -c 'i=0; while [ $i -lt 40 ]; do sleep 0.2 & i=$((i+1)); done; wait' \
        2>"$W/reports.txt" || fail "the command failed"
    "$PY" - "$W/reports.txt" <<'PYEOF' || fail "round $round: reports were cut (see above)"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
bad = 0
for l in lines:
    try:
        json.loads(l)["hakmem"]["counters"]
    except Exception:
        bad += 1
print("%d reports, %d not whole JSON" % (len(lines), bad))
sys.exit(0 if bad == 0 and len(lines) >= 40 else 1)
PYEOF
done
echo "ok: every report whole in 3 rounds"
