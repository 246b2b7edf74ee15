# preload_python: a Python workload (dicts, lists, json, strings, threads) with and without
# hakmem; args: PYTHON WORKLOAD.py
. "$(dirname "$0")/lib.sh"
PY=$1
SCRIPT=$2
[ -x "$PY" ] || fail "no python interpreter at $PY"
run_pair python 1 "'$PY' '$SCRIPT'"
