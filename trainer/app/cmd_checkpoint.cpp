// exatrain checkpoint inspect DIR [--json]   what a checkpoint holds: step, layout, tensors
// exatrain checkpoint verify DIR             every stored piece against its checksum
// DIR is a checkpoint (RUN/checkpoints/step_N), or a run directory (its latest checkpoint).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "checkpoints/dist_checkpoint.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace {

struct CheckpointOptions {
  std::string dir;
  bool json = false;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

void inspect(const CheckpointOptions& o) {
  const std::string dir = resolve_checkpoint_dir(o.dir);
  CheckpointReader reader(dir);
  const CheckpointInfo& info = reader.info();
  struct Tensor {
    std::vector<int64_t> shape;
    std::string dtype;
    int pieces = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, Tensor> tensors;
  std::map<std::string, uint64_t> files;
  uint64_t total = 0;
  for (const auto& p : reader.pieces()) {
    Tensor& t = tensors[p.name];
    t.shape = p.global_shape;
    t.dtype = dtype_name(p.dtype);
    t.pieces += 1;
    t.bytes += p.bytes;
    files[p.file] += p.bytes;
    total += p.bytes;
  }
  if (o.json) {
    nlohmann::json j = {{"dir", dir}, {"step", info.step}, {"tokens", info.tokens}, {"seed", info.seed},
                        {"created_utc", info.created_utc}, {"exatrain_version", info.exatrain_version},
                        {"layout", {{"world_size", info.layout.world_size}, {"tp", info.layout.tp},
                                    {"pp", info.layout.pp}, {"dp", info.layout.dp}, {"zero", info.layout.zero},
                                    {"sequence_parallel", info.layout.sequence_parallel},
                                    {"pipeline_layers", info.layout.pipeline_layers},
                                    {"micro_batch", info.layout.micro_batch}}},
                        {"tokenizer_sha256", info.tokenizer_sha256}, {"datasets", info.datasets},
                        {"model", info.model}, {"bytes", total}, {"files", files}};
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [name, t] : tensors)
      list.push_back({{"name", name}, {"shape", t.shape}, {"dtype", t.dtype}, {"pieces", t.pieces}, {"bytes", t.bytes}});
    j["tensors"] = list;
    std::printf("%s\n", j.dump(1).c_str());
    return;
  }
  std::printf("checkpoint: %s\nstep: %lld (%lld tokens)\nsaved: %s by exatrain %s\nlayout: %s, micro-batch %lld\n",
              dir.c_str(), static_cast<long long>(info.step), static_cast<long long>(info.tokens),
              info.created_utc.c_str(), info.exatrain_version.c_str(), info.layout.describe().c_str(),
              static_cast<long long>(info.layout.micro_batch));
  std::printf("tokenizer: %s\n", info.tokenizer_sha256.empty() ? "none" : ("sha256 " + info.tokenizer_sha256).c_str());
  for (const auto& d : info.datasets) std::printf("data: %s\n", d.c_str());
  std::printf("files: %zu, %.2f MiB in %zu tensors (%zu pieces)\n", files.size(), static_cast<double>(total) / (1 << 20),
              tensors.size(), reader.pieces().size());
  std::printf("%-64s %-16s %-5s %6s %12s\n", "tensor", "shape", "dtype", "pieces", "bytes");
  for (const auto& [name, t] : tensors)
    std::printf("%-64s %-16s %-5s %6d %12llu\n", name.c_str(), shape_text(t.shape).c_str(), t.dtype.c_str(), t.pieces,
                static_cast<unsigned long long>(t.bytes));
}

void verify(const CheckpointOptions& o) {
  const std::string dir = resolve_checkpoint_dir(o.dir);
  CheckpointReader reader(dir);
  const bool tty = ::isatty(::fileno(stderr)) == 1;
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  reader.verify_all([&](uint64_t done, uint64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (!tty || (done < total && std::chrono::duration<double>(now - last).count() < 0.1)) return;
    last = now;
    std::fprintf(stderr, "\rverify %5.1f%%  %.1f / %.1f MiB", total ? 100.0 * done / total : 100.0,
                 static_cast<double>(done) / (1 << 20), static_cast<double>(total) / (1 << 20));
    if (done >= total) std::fprintf(stderr, "\n");
  });
  uint64_t total = 0;
  for (const auto& p : reader.pieces()) total += p.bytes;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("ok: %s (step %lld): %zu pieces, %.2f MiB, every checksum matches (%.2f s)\n", dir.c_str(),
              static_cast<long long>(reader.info().step), reader.pieces().size(), static_cast<double>(total) / (1 << 20),
              seconds);
}

void register_checkpoint_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("checkpoint", "Inspect and verify distributed checkpoints");
  cmd->require_subcommand(1);
  static CheckpointOptions o;
  auto* in = cmd->add_subcommand("inspect", "Step, layout, tokens and tensors of a checkpoint");
  in->add_option("DIR", o.dir, "a checkpoint directory, or a run directory (its latest checkpoint)")->required();
  in->add_flag("--json", o.json, "machine-readable output");
  in->callback([] { inspect(o); });
  auto* ver = cmd->add_subcommand("verify", "Check every stored piece against its checksum (and the manifest's SHA-256); names a broken file");
  ver->add_option("DIR", o.dir, "a checkpoint directory, or a run directory (its latest checkpoint)")->required();
  ver->callback([] { verify(o); });
}

CommandRegistration registration("checkpoint", 45, register_checkpoint_command);

}  // namespace

}  // namespace exatrain
