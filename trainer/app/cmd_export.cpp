// exatrain export --checkpoint CKPT --output DIR [--dtype auto|bf16|fp32] [--max-shard-size SIZE]
//                 [--tokenizer PATH] [--license SPDX] [--verify] [--adapter-only]
// A checkpoint (or a run directory: its latest) as an open-weight Hugging Face release (LoRA
// runs: merged weights plus DIR/adapter), or with --adapter-only just the PEFT adapter.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/hf_release.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/train/release.h"

namespace exatrain {

namespace {

struct ExportCliOptions {
  std::string checkpoint, dtype = "auto", max_shard = "5GB";
  bool adapter_only = false;
  ExportOptions export_options;
};

void run_export(ExportCliOptions& o) {
  ExportOptions e = o.export_options;
  if (o.adapter_only && (e.verify || o.dtype != "auto" || !e.tokenizer.empty() || !e.license.empty()))
    fail("--adapter-only writes the PEFT adapter only (fp32); --verify, --dtype, --tokenizer and --license are for "
         "whole-model exports");
  e.dtype = o.dtype == "bf16" ? ExportDtype::BF16 : o.dtype == "fp32" ? ExportDtype::FP32 : ExportDtype::Auto;
  e.max_shard_bytes = parse_shard_size(o.max_shard);
  const std::string dir = resolve_checkpoint_dir(o.checkpoint);
  CheckpointReader reader(dir);
  if (o.adapter_only) {
    write_peft_adapter(reader, e.output);
    std::printf("exported the LoRA adapter of %s (step %lld) to %s (adapter_config.json, adapter_model.safetensors)\n",
                dir.c_str(), static_cast<long long>(reader.info().step), e.output.c_str());
    return;
  }
  const ExportReport r = export_checkpoint(reader, e);
  std::printf("exported %s (step %lld, %lld parameters) as %s to %s in %.2f s\n", dir.c_str(),
              static_cast<long long>(reader.info().step), static_cast<long long>(r.parameters), dtype_name(r.dtype),
              r.dir.c_str(), r.seconds);
  if (e.verify)
    std::printf("verify: logits of the export equal the checkpoint's (weights as %s) within %.3g max abs on the probe "
                "batch; vs the fp32 weights: %.3g\n", dtype_name(r.dtype), r.verify_diff, r.rounding_diff);
}

void register_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Write a checkpoint as an open-weight Hugging Face release");
  static ExportCliOptions o;
  cmd->add_option("--checkpoint", o.checkpoint, "a checkpoint directory, or a run directory (its latest checkpoint)")
      ->required();
  cmd->add_option("--output", o.export_options.output, "the release directory to write (must not exist or be empty)")
      ->required();
  cmd->add_option("--dtype", o.dtype, "weights dtype; auto = bf16 for bf16 runs, else fp32")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}));
  cmd->add_option("--max-shard-size", o.max_shard, "largest safetensors file: 5GB, 500MB, 10KB (decimal, as transformers)");
  cmd->add_option("--tokenizer", o.export_options.tokenizer, "the tokenizer.json to ship (default: the run's data.tokenizer)");
  cmd->add_option("--license", o.export_options.license, "SPDX license of the weights, for the model card");
  cmd->add_flag("--adapter-only", o.adapter_only,
                "LoRA runs: write only the PEFT adapter (adapter_config.json, adapter_model.safetensors) for "
                "PeftModel.from_pretrained on the base model");
  cmd->add_flag("--verify", o.export_options.verify,
                "reload the export and compare its logits on a probe batch with the checkpoint's forward pass");
  cmd->callback([] { run_export(o); });
}

CommandRegistration registration("export", 46, register_export_command);

}  // namespace

}  // namespace exatrain
