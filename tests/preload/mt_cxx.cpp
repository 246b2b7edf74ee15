// mt_cxx.cpp -- a multithreaded C++17 program for the LD_PRELOAD tests. Producers build
// records (std::string, std::vector, std::map inside std::shared_ptr) and hand them through
// a queue to consumers, which check them, aggregate into std::map / std::unordered_map and
// drop the last reference in a thread other than the one that allocated it. Workers also
// churn containers of their own. The printed result is deterministic (sums, sorted
// output), so runs with and without hakmem must print the same. Exits 1 on a failed check.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string &what) {
    std::fprintf(stderr, "mt_cxx: check failed: %s\n", what.c_str());
    std::fflush(stderr);
    std::_Exit(1);
}

uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct Record {
    uint64_t id;
    std::string name;
    std::vector<uint32_t> values;
    std::map<std::string, std::string> attrs;
    uint64_t checksum;  // over the fields above
};

uint64_t checksum_of(const Record &r) {
    uint64_t h = mix(r.id);
    for (char c : r.name) h = mix(h ^ static_cast<unsigned char>(c));
    for (uint32_t v : r.values) h = mix(h ^ v);
    for (const auto &kv : r.attrs) h = mix(h ^ std::hash<std::string>{}(kv.first) ^ (kv.second.size() << 1));
    return h;
}

std::shared_ptr<Record> make_record(uint64_t id) {
    auto r = std::make_shared<Record>();
    r->id = id;
    uint64_t s = mix(id);
    r->name = "rec-" + std::to_string(id) + std::string(s % 200, static_cast<char>('a' + s % 26));
    r->values.resize((s >> 8) % 300);
    for (size_t i = 0; i < r->values.size(); i++) r->values[i] = static_cast<uint32_t>(mix(s + i));
    for (unsigned i = 0; i < (s >> 20) % 6; i++) r->attrs["k" + std::to_string(i)] = std::string(i * 37 + 1, 'v');
    r->checksum = checksum_of(*r);
    return r;
}

template <typename T>
class Queue {
  public:
    explicit Queue(size_t cap) : cap_(cap) {}
    void push(T v) {
        std::unique_lock<std::mutex> lk(mu_);
        not_full_.wait(lk, [&] { return q_.size() < cap_; });
        q_.push_back(std::move(v));
        not_empty_.notify_one();
    }
    bool pop(T &out) {
        std::unique_lock<std::mutex> lk(mu_);
        not_empty_.wait(lk, [&] { return !q_.empty() || closed_; });
        if (q_.empty()) return false;
        out = std::move(q_.front());
        q_.pop_front();
        not_full_.notify_one();
        return true;
    }
    void close() {
        std::lock_guard<std::mutex> lk(mu_);
        closed_ = true;
        not_empty_.notify_all();
    }

  private:
    std::mutex mu_;
    std::condition_variable not_full_, not_empty_;
    std::deque<T> q_;
    size_t cap_;
    bool closed_ = false;
};

constexpr unsigned kProducers = 2, kConsumers = 3, kPerProducer = 100000;

struct ConsumerResult {
    std::map<std::string, uint64_t> by_prefix;       // name prefix -> sum of value counts
    std::unordered_map<uint64_t, uint64_t> by_bucket; // id % 97 -> xor of checksums
    uint64_t records = 0, values = 0;
};

}  // namespace

int main() {
    Queue<std::shared_ptr<Record>> q(256);
    // Records the producers keep a second reference to; consumers may drop theirs first, so
    // the last reference goes away in whichever thread is later.
    std::vector<std::vector<std::shared_ptr<Record>>> kept(kProducers);
    std::vector<ConsumerResult> results(kConsumers);
    std::atomic<unsigned> producers_left{kProducers};

    std::vector<std::thread> threads;
    for (unsigned p = 0; p < kProducers; p++) {
        threads.emplace_back([&, p] {
            for (uint64_t i = 0; i < kPerProducer; i++) {
                auto r = make_record(p * kPerProducer + i);
                if (i % 5 == 0) kept[p].push_back(r);
                if (kept[p].size() > 2000) kept[p].erase(kept[p].begin(), kept[p].begin() + 1000);
                q.push(std::move(r));
            }
            if (--producers_left == 0) q.close();
        });
    }
    for (unsigned c = 0; c < kConsumers; c++) {
        threads.emplace_back([&, c] {
            ConsumerResult &res = results[c];
            std::shared_ptr<Record> r;
            std::vector<std::string> scratch;
            while (q.pop(r)) {
                if (checksum_of(*r) != r->checksum) fail("record " + std::to_string(r->id) + " corrupted");
                res.by_prefix[r->name.substr(0, 6)] += r->values.size();
                res.by_bucket[r->id % 97] ^= r->checksum;
                res.records++;
                res.values += r->values.size();
                // churn some containers of our own
                scratch.push_back(r->name + "/" + std::to_string(r->values.size()));
                if (scratch.size() > 500) {
                    std::sort(scratch.begin(), scratch.end());
                    scratch.erase(std::unique(scratch.begin(), scratch.end()), scratch.end());
                    scratch.resize(scratch.size() / 2);
                    scratch.shrink_to_fit();
                }
                r.reset();  // the last reference, unless a producer still keeps it
            }
        });
    }
    for (auto &t : threads) t.join();
    kept.clear();  // the remaining records die in the main thread

    // merge deterministically
    std::map<std::string, uint64_t> by_prefix;
    std::map<uint64_t, uint64_t> by_bucket;
    uint64_t records = 0, values = 0;
    for (auto &res : results) {
        for (auto &kv : res.by_prefix) by_prefix[kv.first] += kv.second;
        for (auto &kv : res.by_bucket) by_bucket[kv.first] ^= kv.second;
        records += res.records;
        values += res.values;
    }
    if (records != uint64_t(kProducers) * kPerProducer) fail("records lost: " + std::to_string(records));
    uint64_t expect_values = 0;
    for (uint64_t id = 0; id < uint64_t(kProducers) * kPerProducer; id++) expect_values += (mix(id) >> 8) % 300;
    if (values != expect_values) fail("value count mismatch");

    std::ostringstream os;
    os << "records " << records << "\nvalues " << values << "\nprefixes " << by_prefix.size() << "\n";
    uint64_t h = 0;
    for (auto &kv : by_prefix) h = mix(h ^ std::hash<std::string>{}(kv.first) ^ kv.second);
    os << "prefix-hash " << h << "\n";
    for (auto &kv : by_bucket) os << "bucket " << kv.first << " " << kv.second << "\n";
    std::fputs(os.str().c_str(), stdout);
    return 0;
}
