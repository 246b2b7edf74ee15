// bench_fast.cc -- Google Benchmark microbenchmarks of the allocation fast paths.
//
// Built twice from this one file:
//   bench_fast          hak_malloc/hak_free/... from hakmem_api (prefixed API, linked in)
//   bench_fast_system   -DUSE_SYSTEM_MALLOC: plain malloc/free/..., so that any allocator
//                       can be measured with LD_PRELOAD (glibc when nothing is preloaded)
//
// Benchmarks (items_per_second counts malloc+free pairs, or realloc calls for growth):
//   BM_Pair/<size>         malloc, one write, free, repeated
//   BM_Batch64/<size>      64 mallocs (one write each), then 64 frees
//   BM_ReallocGrowth/<max> grow one block from 16 bytes to <max> by ~1.5x steps, then free
//   BM_Calloc/<size>       calloc + free
//   BM_Aligned/<al>/<size> aligned_alloc(al, size) + free
//   BM_PingPong/<batch>    two threads: each allocates <batch> blocks, hands them to the
//                          other through an atomic slot, and frees the ones it receives
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#ifdef USE_SYSTEM_MALLOC
#define B_MALLOC(n) std::malloc(n)
#define B_FREE(p) std::free(p)
#define B_CALLOC(c, n) std::calloc(c, n)
#define B_REALLOC(p, n) std::realloc(p, n)
#define B_ALIGNED(a, n) std::aligned_alloc(a, n)
#else
#include "hakmem.h"
#define B_MALLOC(n) hak_malloc(n)
#define B_FREE(p) hak_free(p)
#define B_CALLOC(c, n) hak_calloc(c, n)
#define B_REALLOC(p, n) hak_realloc(p, n)
#define B_ALIGNED(a, n) hak_aligned_alloc(a, n)
#endif

namespace {

void touch(void *p) { *static_cast<volatile unsigned char *>(p) = 1; }

void check(void *p, benchmark::State &state) {
    if (p == nullptr) state.SkipWithError("allocation failed");
}

const int64_t kSizes[] = {16, 64, 256, 1024, 8192, 65536, 1 << 20};

void SizeArgs(benchmark::internal::Benchmark *b) {
    for (int64_t s : kSizes) b->Arg(s);
}

void BM_Pair(benchmark::State &state) {
    const size_t n = static_cast<size_t>(state.range(0));
    for (auto _ : state) {
        void *p = B_MALLOC(n);
        benchmark::DoNotOptimize(p);
        if (p == nullptr) {
            check(p, state);
            break;
        }
        touch(p);
        B_FREE(p);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Pair)->Apply(SizeArgs);

void BM_Batch64(benchmark::State &state) {
    const size_t n = static_cast<size_t>(state.range(0));
    void *blk[64];
    for (auto _ : state) {
        for (int i = 0; i < 64; i++) {
            void *p = B_MALLOC(n);
            benchmark::DoNotOptimize(p);
            if (p == nullptr) {
                check(p, state);
                return;
            }
            touch(p);
            blk[i] = p;
        }
        for (int i = 0; i < 64; i++) B_FREE(blk[i]);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_Batch64)->Apply(SizeArgs);

void BM_ReallocGrowth(benchmark::State &state) {
    const size_t max = static_cast<size_t>(state.range(0));
    int64_t calls = 0;
    for (auto _ : state) {
        size_t n = 16;
        void *p = B_MALLOC(n);
        while (p != nullptr && n < max) {
            n = n + n / 2;
            if (n > max) n = max;
            p = B_REALLOC(p, n);
            benchmark::DoNotOptimize(p);
            if (p) static_cast<volatile unsigned char *>(p)[n - 1] = 1;
            calls++;
        }
        if (p == nullptr) {
            check(p, state);
            break;
        }
        B_FREE(p);
    }
    state.SetItemsProcessed(calls);
}
BENCHMARK(BM_ReallocGrowth)->Arg(4096)->Arg(1 << 20);

void BM_Calloc(benchmark::State &state) {
    const size_t n = static_cast<size_t>(state.range(0));
    for (auto _ : state) {
        void *p = B_CALLOC(1, n);
        benchmark::DoNotOptimize(p);
        if (p == nullptr) {
            check(p, state);
            break;
        }
        B_FREE(p);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_Calloc)->Arg(64)->Arg(4096)->Arg(65536);

void BM_Aligned(benchmark::State &state) {
    const size_t al = static_cast<size_t>(state.range(0));
    const size_t n = static_cast<size_t>(state.range(1));
    for (auto _ : state) {
        void *p = B_ALIGNED(al, n);
        benchmark::DoNotOptimize(p);
        if (p == nullptr || (reinterpret_cast<uintptr_t>(p) & (al - 1)) != 0) {
            state.SkipWithError(p ? "misaligned block" : "allocation failed");
            break;
        }
        touch(p);
        B_FREE(p);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Aligned)->Args({64, 64})->Args({64, 192})->Args({4096, 4096})->Args({4096, 8192});

// Cross-thread ping-pong. A partner thread lives for one run of the benchmark function
// (started before, and joined after, the timed loop). Each timed iteration: the main thread
// allocates <batch> blocks and posts them; the partner frees them, allocates <batch> of its
// own and posts those back; the main thread frees them. 2*batch cross-thread frees per
// iteration.
struct alignas(64) Mailbox {
    std::atomic<void **> msg{nullptr};
};

void **wait_msg(Mailbox &m) {
    void **v;
    unsigned spins = 0;
    while ((v = m.msg.load(std::memory_order_acquire)) == nullptr) {
        if (++spins > 256) {
            spins = 0;
            std::this_thread::yield();  // two threads may share one core
        }
    }
    m.msg.store(nullptr, std::memory_order_relaxed);
    return v;
}

void BM_PingPong(benchmark::State &state) {
    const int batch = static_cast<int>(state.range(0));
    const size_t n = 64;
    Mailbox to_partner, to_main;
    std::vector<void *> mine(batch), theirs(batch);
    void **stop = reinterpret_cast<void **>(&stop);  // sentinel, never dereferenced

    std::thread partner([&] {
        for (;;) {
            void **in = wait_msg(to_partner);
            if (in == stop) return;
            for (int i = 0; i < batch; i++) B_FREE(in[i]);
            for (int i = 0; i < batch; i++) {
                void *p = B_MALLOC(n);
                if (p) touch(p);
                theirs[i] = p;
            }
            to_main.msg.store(theirs.data(), std::memory_order_release);
        }
    });

    bool failed = false;
    for (auto _ : state) {
        for (int i = 0; i < batch; i++) {
            void *p = B_MALLOC(n);
            if (p == nullptr) failed = true;
            else touch(p);
            mine[i] = p;
        }
        to_partner.msg.store(mine.data(), std::memory_order_release);
        void **back = wait_msg(to_main);
        for (int i = 0; i < batch; i++) {
            if (back[i] == nullptr) failed = true;
            B_FREE(back[i]);
        }
    }
    to_partner.msg.store(stop, std::memory_order_release);
    partner.join();
    if (failed) state.SkipWithError("allocation failed");
    state.SetItemsProcessed(state.iterations() * 2 * batch);
}
BENCHMARK(BM_PingPong)->Arg(1)->Arg(64)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
