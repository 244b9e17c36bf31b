// data_bench: the loader benchmark without the exatrain binary (no LibTorch to link).
//   data_bench --seq-len 2048 --batch 64 --dp 8 --batches 200 DIR [DIR...]
// Same measurement as `exatrain data bench`.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "data/shards/loader_bench.h"

int main(int argc, char** argv) {
  exatrain::LoaderBenchOptions o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> long long {
        if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
        return std::stoll(argv[++i]);
      };
      if (arg == "--seq-len")
        o.seq_len = value();
      else if (arg == "--batch")
        o.global_batch = value();
      else if (arg == "--dp")
        o.dp_size = value();
      else if (arg == "--batches")
        o.batches = value();
      else if (arg == "--seed")
        o.seed = static_cast<uint64_t>(value());
      else if (arg.rfind("--", 0) == 0)
        throw std::runtime_error("unknown option " + arg);
      else
        o.datasets.push_back(arg);
    }
    std::fputs(exatrain::format_loader_bench(o, exatrain::run_loader_bench(o)).c_str(), stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
