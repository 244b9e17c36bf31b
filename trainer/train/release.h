// The open-weight release of a checkpoint: `exatrain export` and the run's RUN/final. Reads
// each tensor whole from the checkpoint's pieces (whatever layout saved them), one at a time,
// and streams it into checkpoints/hf_release's writer; --verify reloads the export and compares
// logits on a probe batch with the checkpoint's own forward pass.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "checkpoints/safetensors.h"
#include "trainer/core/config.h"

namespace exatrain {

class CheckpointReader;
class Communicator;
class Exaone4Model;

struct ExportOptions {
  std::string output;
  ExportDtype dtype = ExportDtype::Auto;  // auto: bf16 when the run trained in bf16, else fp32
  uint64_t max_shard_bytes = 5000000000;  // decimal, as transformers' max_shard_size
  std::string tokenizer;                  // default: the run's data.tokenizer
  std::string license;                    // SPDX of the weights, for the model card
  bool verify = false;
};

struct ExportReport {
  std::string dir;
  DType dtype = DType::F32;
  int64_t parameters = 0;
  double seconds = 0;
  // --verify: max |logits(export) - logits(checkpoint weights rounded to the export dtype)|, and
  // for information the same against the unrounded fp32 weights.
  double verify_diff = -1, rounding_diff = -1;
};

// The checkpoint's weights as a single-rank fp32 model (whatever layout saved them), and the
// run's config (model, data.tokenizer, ...) in `run`.
std::unique_ptr<Exaone4Model> load_checkpoint_model(CheckpointReader& reader, RunConfig* run = nullptr);

// The LoRA adapter of a checkpoint as PEFT saves one, into `dir` (new or empty):
// adapter_config.json (peft_type LORA, r, lora_alpha, target_modules, base_model_name_or_path)
// and adapter_model.safetensors (fp32; keys base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight).
// Fails naming the checkpoint when its run had no adapters.
// base_model_name_or_path is the run's init.from_hf.
void write_peft_adapter(CheckpointReader& reader, const std::string& dir);

// With `world` (collective: every rank calls it), each rank writes its share of the shards; with
// LoRA the weights are merged (W + alpha / r B A) and DIR/adapter holds the adapter as well;
// --verify runs on every rank (rank 0's report is the one to print).
ExportReport export_checkpoint(CheckpointReader& reader, const ExportOptions& options,
                               const Communicator* world = nullptr);

}  // namespace exatrain
