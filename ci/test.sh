#!/usr/bin/env bash
# The test command (README, .ci/run): install dependencies, build, and run every CTest
# suite, again with the counters compiled out; then the prefixed-API tests under
# AddressSanitizer+UBSan and the concurrency tests under ThreadSanitizer.
# Set HAKMEM_TEST_SANITIZERS=0 to skip the sanitizer builds.
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
echo "== counters compiled out (-DHAKMEM_STATS=OFF): all tests (those that read counters skip)"
run_tree build-ci-nostats "" -DCMAKE_BUILD_TYPE=Release -DHAKMEM_STATS=OFF -DHAKMEM_BUILD_BENCH=OFF
if [[ "${HAKMEM_TEST_SANITIZERS:-1}" != 0 ]]; then
  echo "== AddressSanitizer + UBSan: prefixed-API tests"
  run_tree build-ci-asan "api" -DCMAKE_BUILD_TYPE=Debug -DHAKMEM_SANITIZER=address -DHAKMEM_BUILD_STRESS=OFF -DHAKMEM_BUILD_BENCH=OFF
  echo "== ThreadSanitizer: remote queue, thread cache and cross-thread tests"
  run_tree build-ci-tsan "tsan" -DCMAKE_BUILD_TYPE=Debug -DHAKMEM_SANITIZER=thread -DHAKMEM_BUILD_STRESS=OFF -DHAKMEM_BUILD_BENCH=OFF
fi
