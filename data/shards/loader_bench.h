// The loader benchmark: tokens/s one data-parallel rank gets from the loader, from the page
// cache, against a named baseline measured in the same run (a sequential widening copy of the
// same number of tokens out of the same memory-mapped shards: what reading costs at best).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace exatrain {

struct LoaderBenchOptions {
  std::vector<std::string> datasets;  // equal weights
  int64_t seq_len = 2048;
  int64_t global_batch = 64;
  int64_t dp_size = 1;  // the benchmark runs rank 0
  int64_t batches = 200;
  uint64_t seed = 1234;
};

struct LoaderBenchResult {
  int64_t rows_per_rank = 0;
  double tokens_per_rank = 0;         // tokens the rank received
  double baseline_tokens_per_s = 0;   // sequential widening copy
  double sync_tokens_per_s = 0;       // next() without a prefetch thread: the loader's own cost
  double prefetch_tokens_per_s = 0;   // next() with 4 batches prefetched, consumer doing nothing else
  double prefetch_wait_share = 0;     // share of that time next() waited
};

LoaderBenchResult run_loader_bench(const LoaderBenchOptions& options);
// The report: one line per measurement, with the ratios to the baseline.
std::string format_loader_bench(const LoaderBenchOptions& options, const LoaderBenchResult& result);

}  // namespace exatrain
