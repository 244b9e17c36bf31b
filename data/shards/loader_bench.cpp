#include "data/shards/loader_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "data/shards/loader.h"
#include "data/shards/token_dataset.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

LoaderConfig bench_config(const LoaderBenchOptions& o, int64_t prefetch) {
  LoaderConfig c;
  for (const auto& path : o.datasets) c.datasets.push_back(LoaderDataset{path, 1.0, 0, 0});
  c.seq_len = o.seq_len;
  c.global_batch = o.global_batch;
  c.seed = o.seed;
  c.dp_rank = 0;
  c.dp_size = o.dp_size;
  c.prefetch = prefetch;
  c.verify_checksums = false;  // the bench measures reading; `data verify` measures hashing
  return c;
}

// Keeps the compiler from discarding the copies.
volatile int64_t g_sink = 0;

}  // namespace

LoaderBenchResult run_loader_bench(const LoaderBenchOptions& o) {
  if (o.datasets.empty()) fail("bench: no datasets");
  if (o.batches < 1) fail("bench: --batches must be at least 1");
  LoaderBenchResult r;
  r.rows_per_rank = o.global_batch / std::max<int64_t>(1, o.dp_size);
  r.tokens_per_rank = static_cast<double>(o.batches) * r.rows_per_rank * (o.seq_len + 1);

  // Page cache: touch every token once (the first pass reads the disk, untimed).
  std::vector<TokenDataset> sets;
  for (const auto& path : o.datasets) sets.emplace_back(path);
  std::vector<int32_t> buffer(1 << 20);
  for (const auto& ds : sets)
    for (uint64_t at = 0; at < ds.tokens(); at += buffer.size()) {
      const uint64_t n = std::min<uint64_t>(buffer.size(), ds.tokens() - at);
      ds.read(at, n, buffer.data());
      g_sink = g_sink + buffer[0];
    }

  // Baseline: the same number of tokens copied sequentially (wrapping around the data).
  {
    const auto t0 = std::chrono::steady_clock::now();
    auto remaining = static_cast<uint64_t>(r.tokens_per_rank);
    uint64_t at = 0;
    size_t d = 0;
    while (remaining > 0) {
      const TokenDataset& ds = sets[d];
      if (at >= ds.tokens()) {
        at = 0;
        d = (d + 1) % sets.size();
        continue;
      }
      const uint64_t n = std::min<uint64_t>({buffer.size(), ds.tokens() - at, remaining});
      ds.read(at, n, buffer.data());
      g_sink = g_sink + buffer[n - 1];
      at += n;
      remaining -= n;
    }
    r.baseline_tokens_per_s = r.tokens_per_rank / seconds_since(t0);
  }
  {
    DataLoader loader(bench_config(o, 0));
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < o.batches; ++b) g_sink = g_sink + loader.next().tokens.back();
    r.sync_tokens_per_s = r.tokens_per_rank / seconds_since(t0);
  }
  {
    DataLoader loader(bench_config(o, 4));
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < o.batches; ++b) g_sink = g_sink + loader.next().tokens.back();
    const double seconds = seconds_since(t0);
    r.prefetch_tokens_per_s = r.tokens_per_rank / seconds;
    r.prefetch_wait_share = loader.stats().wait_seconds / seconds;
  }
  return r;
}

std::string format_loader_bench(const LoaderBenchOptions& o, const LoaderBenchResult& r) {
  std::string out = fmt::format(
      "loader bench: {} dataset(s), seq_len {}, global batch {}, dp {} (rank 0: {} rows of {} tokens), {} batches\n",
      o.datasets.size(), o.seq_len, o.global_batch, o.dp_size, r.rows_per_rank, o.seq_len + 1, o.batches);
  out += fmt::format("  baseline (sequential copy):  {:8.1f} M tokens/s\n", r.baseline_tokens_per_s / 1e6);
  out += fmt::format("  loader, no prefetch:         {:8.1f} M tokens/s per rank  ({:.2f}x baseline)\n",
                     r.sync_tokens_per_s / 1e6, r.sync_tokens_per_s / r.baseline_tokens_per_s);
  out += fmt::format("  loader, prefetch 4:          {:8.1f} M tokens/s per rank  ({:.2f}x baseline; next() waited "
                     "{:.0f}% of the time with no training step to hide behind)\n",
                     r.prefetch_tokens_per_s / 1e6, r.prefetch_tokens_per_s / r.baseline_tokens_per_s,
                     100 * r.prefetch_wait_share);
  return out;
}

}  // namespace exatrain
