#!/usr/bin/env bash
# The test command (README, .ci/run): install dependencies, build, and run every CTest
# suite, again with the counters compiled out; then the sanitizer and checker matrix
# (ci/sanitizers.sh); then Redis and Nginx from Debian's sources, built with hakmem, under
# their own tests (ci/redis.sh, ci/nginx.sh). Set HAKMEM_TEST_SANITIZERS=0 to skip the
# sanitizer builds, HAKMEM_TEST_SERVERS=0 to skip Redis and Nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/deps.sh
jobs=$(nproc)

run_tree() {  # run_tree DIR LABEL-REGEX CMAKE-ARGS...
  local dir=$1 labels=$2; shift 2
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  (cd "$dir" && ctest --output-on-failure -j"$jobs" ${labels:+-L "$labels"})
}

echo "== release build: all tests"
run_tree build-ci "" -DCMAKE_BUILD_TYPE=Release  # bench/ too: its smoke tests and runner test
echo "== counters compiled out, every hardening option on: all tests (those that read counters skip)"
run_tree build-ci-nostats "" -DCMAKE_BUILD_TYPE=Release -DHAKMEM_STATS=OFF -DHAKMEM_BUILD_BENCH=OFF \
  -DHAKMEM_HARDEN_CHECK=ON -DHAKMEM_GUARD_HOOK=ON
# AddressSanitizer+UBSan, ThreadSanitizer, Valgrind and a libFuzzer run (skips itself when
# HAKMEM_TEST_SANITIZERS=0)
bash ci/sanitizers.sh build-ci
if [[ "${HAKMEM_TEST_SERVERS:-1}" != 0 ]]; then
  echo "== Redis's own test suite: hakmem-linked vs glibc Redis (ci/redis.sh)"
  bash ci/redis.sh
  echo "== Nginx built with hakmem (and glibc): functional check (ci/nginx.sh)"
  bash ci/nginx.sh
fi
