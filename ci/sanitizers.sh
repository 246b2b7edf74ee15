#!/usr/bin/env bash
# The sanitizer and checker matrix; ci/test.sh runs it after the release trees, and
# HAKMEM_TEST_SANITIZERS=0 skips it. Three checkers, each where it sees something:
#  1. AddressSanitizer + UBSan (clang, with the libFuzzer target): every test on the prefixed
#     API (label api: tests/api, tests/mt, tests/fault, the fuzz smoke, the stress programs
#     built on hak_*, core/large) and the white-box module tests; then libFuzzer for a while.
#  2. ThreadSanitizer (gcc): label tsan: the remote queue, thread cache and cross-thread
#     tests, the stress programs on hak_*, the fuzz smoke with up to 4 threads.
#  3. Valgrind memcheck on single-threaded runs of the release tree's programs (the API
#     tests, the fault tests, the fuzz driver with one thread): uninitialised reads and
#     invalid accesses inside hakmem's own code and metadata.
# Usage: ci/sanitizers.sh [RELEASE_BUILD_DIR]   (default build-ci; built here if missing)
# Budget: about 8 minutes on 2 cores. HAKMEM_FUZZ_SECONDS (default 30) sets the libFuzzer run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${HAKMEM_TEST_SANITIZERS:-1}" == 0 ]]; then
  echo "ci/sanitizers.sh: skipped (HAKMEM_TEST_SANITIZERS=0)"
  exit 0
fi
release=${1:-build-ci}
jobs=$(nproc)

# clang and its runtimes (libclang-rt-14-dev holds libFuzzer on Debian 12), valgrind
bash "$(dirname "$0")/deps.sh" clang libclang-rt-14-dev valgrind

build() {  # build DIR CMAKE-ARGS...
  local dir=$1; shift
  cmake -S . -B "$dir" -DHAKMEM_BUILD_BENCH=OFF "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
}

t0=$SECONDS
echo "== AddressSanitizer + UBSan (clang): prefixed-API and white-box tests"
CC=clang CXX=clang++ build build-ci-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_SANITIZER=address -DHAKMEM_FUZZ=ON \
  -DHAKMEM_HARDEN_CHECK=ON -DHAKMEM_GUARD_HOOK=ON
# not large.bigcache.fork, which forks while a thread runs and has no gate against ASan's
# own fork deadlock (mt_fork has one: tests/mt/CMakeLists.txt)
(cd build-ci-asan && ctest --output-on-failure -j"$jobs" -L 'api|whitebox' -E '\.fork$')
echo "== libFuzzer (ASan+UBSan): fuzz_api_libfuzzer for ${HAKMEM_FUZZ_SECONDS:-30} s"
corpus=$(mktemp -d) log=$(mktemp)
if ! build-ci-asan/tests/fuzz/fuzz_api_libfuzzer -max_total_time="${HAKMEM_FUZZ_SECONDS:-30}" -max_len=4096 \
    -print_final_stats=1 "$corpus" >"$log" 2>&1; then
  tail -60 "$log"
  exit 1
fi
grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$log" || true
rm -rf "$corpus" "$log"
echo "   asan: $((SECONDS - t0)) s"

t0=$SECONDS
echo "== ThreadSanitizer: remote queue, thread cache, cross-thread and stress tests"
build build-ci-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_SANITIZER=thread
(cd build-ci-tsan && ctest --output-on-failure -j"$jobs" -L tsan)
echo "   tsan: $((SECONDS - t0)) s"

t0=$SECONDS
echo "== Valgrind memcheck: single-threaded API, fault and fuzz runs ($release)"
if [[ ! -x "$release/tests/fuzz/fuzz_api" ]]; then
  build "$release" -DCMAKE_BUILD_TYPE=Release
fi
vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --track-origins=no)
# Left out: api_death (aborts by design), api_oom and api_align.huge_alignment (address-space
# limits: Valgrind's own layout refuses a 2^36 alignment). fault_api realloc is back since a
# large block's move maps its new tail before the mremap that moves it (hak_os_move): one
# mremap that moved and grew left the grown part unaddressable to memcheck.
runs=(
  "tests/api/api_basic" "tests/api/api_calloc" "tests/api/api_realloc" "tests/api/api_info"
  "tests/api/api_align posix_memalign" "tests/api/api_align aligned_alloc" "tests/api/api_align memalign"
  "tests/fault/fault_api small" "tests/fault/fault_api large" "tests/fault/fault_api calloc"
  "tests/fault/fault_api purge" "tests/fault/fault_api unmap" "tests/fault/fault_api realloc" "tests/fault/fault_api grow"
  "tests/fuzz/fuzz_api --seed 7 --ops 20000 --threads-max 1"
)
vg_one() {  # vg_one "PROGRAM ARGS": run it under memcheck in the release tree
  local out
  if out=$(cd "$release" && "${vg[@]}" $1 2>&1); then
    echo "ok (valgrind): $1"
  else
    echo "FAIL (valgrind): $1"
    echo "$out" | tail -40
    return 1
  fi
}
export -f vg_one
export release
export VG="${vg[*]}"
printf '%s\n' "${runs[@]}" | xargs -P"$jobs" -I{} bash -c 'vg=($VG); vg_one "$1"' _ {}
echo "   valgrind: $((SECONDS - t0)) s"
