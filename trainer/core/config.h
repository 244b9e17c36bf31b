// The run configuration: one typed struct per component, each describing its keys once in
// `visit` (see config_schema.h). load_run_config() resolves a run config: model preset, then
// the run file, then --set overrides; then every cross-field rule is checked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trainer/core/config_schema.h"

namespace exatrain {

enum class RopeScaling { None, Llama3 };
enum class LayerKind { Sliding, Full };

struct RopeScalingConfig {
  RopeScaling type = RopeScaling::None;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;

  template <class V>
  void visit(V& v) {
    v.choice("type", type, ChoiceNames<RopeScaling>{{"none", RopeScaling::None}, {"llama3", RopeScaling::Llama3}},
             "RoPE frequency scaling (llama3 as in Llama 3.1)");
    v.field("factor", factor, "llama3: long-wavelength divisor", Bounds::above(0));
    v.field("low_freq_factor", low_freq_factor, "llama3: low-frequency boundary", Bounds::above(0));
    v.field("high_freq_factor", high_freq_factor, "llama3: high-frequency boundary", Bounds::above(0));
    v.field("original_max_position", original_max_position, "llama3: pre-training context", Bounds::at_least(1));
  }
};

// Field names follow Hugging Face's Exaone4Config where one exists (see docs/configuration.md).
struct ModelConfig {
  std::string preset;  // run configs only: name of configs/models/<preset>.yaml, or a path
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // 0: hidden_size / num_heads
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScalingConfig rope_scaling;
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;  // 0: no sliding window; every layer is full attention with RoPE
  int64_t sliding_window_pattern = 4;  // with a window: layer i is full iff (i + 1) % pattern == 0
  std::vector<std::string> layer_types;  // explicit "sliding_attention" / "full_attention" per layer
  bool tie_embeddings = false;
  int64_t pad_token_id = 0;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  double init_std = 0.02;

  template <class V>
  void visit(V& v) {
    v.field("preset", preset, "model preset name (configs/models/NAME.yaml) or a YAML path");
    v.field("vocab_size", vocab_size, "vocabulary size", Bounds::at_least(1));
    v.field("hidden_size", hidden_size, "model width", Bounds::at_least(1));
    v.field("intermediate_size", intermediate_size, "MLP width", Bounds::at_least(1));
    v.field("num_layers", num_layers, "decoder layers", Bounds::between(1, 10000));
    v.field("num_heads", num_heads, "query heads", Bounds::at_least(1));
    v.field("num_kv_heads", num_kv_heads, "key/value heads (GQA)", Bounds::at_least(1));
    v.field("head_dim", head_dim, "per-head width; 0 = hidden_size / num_heads", Bounds::at_least(0));
    v.field("rms_norm_eps", rms_norm_eps, "RMSNorm epsilon", Bounds::above(0));
    v.field("rope_theta", rope_theta, "RoPE base", Bounds::above(0));
    v.section("rope_scaling", rope_scaling, "RoPE scaling");
    v.field("max_position_embeddings", max_position_embeddings, "longest supported sequence", Bounds::at_least(1));
    v.field("sliding_window", sliding_window, "local attention window; 0 = none", Bounds::at_least(0));
    v.field("sliding_window_pattern", sliding_window_pattern, "every Nth layer is global", Bounds::at_least(1));
    v.field("layer_types", layer_types, "explicit per-layer attention kinds (wins over the pattern)");
    v.field("tie_embeddings", tie_embeddings, "lm_head shares the embedding matrix");
    v.field("pad_token_id", pad_token_id, "padding id (its embedding row gets no gradient)", Bounds::at_least(0));
    v.field("bos_token_id", bos_token_id, "beginning-of-sequence id", Bounds::at_least(0));
    v.field("eos_token_id", eos_token_id, "end-of-sequence id", Bounds::at_least(0));
    v.field("init_std", init_std, "std of the normal initialisation", Bounds::above(0));
  }

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_heads; }
  bool hybrid() const { return sliding_window > 0; }
  // The attention kind of every layer, from layer_types or the pattern (as transformers does).
  std::vector<LayerKind> layer_kinds() const;
  // Layers that apply RoPE: every layer without a window, only sliding layers with one.
  bool layer_uses_rope(int64_t layer) const;
  // Checks every rule (divisibility, lengths, ids < vocab); `locs` names where values came from.
  void validate(const ConfigLocations& locs, const std::string& prefix = "model") const;
};

struct ParallelConfig {
  int64_t tp = 1, pp = 1, dp = 0;
  int64_t zero = 0;
  bool sequence_parallel = false;
  std::vector<int64_t> pipeline_layers;  // layers per stage; empty: even split
  double timeout_s = 300;
  bool grad_overlap = true;
  double grad_bucket_mb = 25;  // PyTorch DDP's default
  template <class V>
  void visit(V& v) {
    v.field("tp", tp, "tensor-parallel ranks (within a node)", Bounds::at_least(1));
    v.field("sequence_parallel", sequence_parallel,
            "split norms and residuals along the sequence over TP (all-gather/reduce-scatter)");
    v.field("pp", pp, "pipeline stages", Bounds::at_least(1));
    v.field("pipeline_layers", pipeline_layers, "decoder layers per stage, first to last; [] = even split",
            Bounds::at_least(1));
    v.field("dp", dp, "data-parallel replicas; 0 = auto (world / (tp * pp))", Bounds::at_least(0));
    v.field("zero", zero, "0: DP all-reduce; 1: ZeRO-1 (optimizer state partitioned over DP)", Bounds::between(0, 1));
    v.field("timeout_s", timeout_s, "a collective slower than this aborts the job", Bounds::above(0));
    v.field("grad_overlap", grad_overlap,
            "start each gradient bucket's DP reduction during backward, as soon as it is complete; false: after "
            "backward (same results, bit for bit; the baseline for measuring the overlap)");
    v.field("grad_bucket_mb", grad_bucket_mb, "MiB of gradients per bucket (reduced in reverse layer order)",
            Bounds::above(0));
  }
};

enum class Precision { FP32, BF16 };
enum class DeviceKind { Auto, Cpu, Cuda };
enum class Recompute { None, Full };
// Which implementation of the fused operators (kernels/ops.h) runs: auto = the fastest on the
// device (our CPU kernels on the CPU), reference = ATen (the judge).
enum class KernelChoice { Auto, Reference };
enum class OnNonfinite { Skip, Stop };

// Spikes: a z-score of the loss and the gradient norm against the last `window` steps.
struct SpikeConfig {
  int64_t window = 128;
  double zscore = 0;  // 0: measured (metrics), never skipped
  template <class V>
  void visit(V& v) {
    v.field("window", window, "steps in the rolling mean and deviation of loss and gradient norm",
            Bounds::at_least(2));
    v.field("zscore", zscore,
            "skip the update when the loss or the gradient norm is this many deviations above the window's mean "
            "(llm.c skips at 5-6); 0 = never skip", Bounds::at_least(0));
  }
};

struct TrainConfig {
  int64_t steps = 100;
  int64_t global_batch = 8;  // sequences per optimizer step
  int64_t micro_batch = 8;   // sequences per forward/backward; accumulation = global / micro
  int64_t seq_len = 128;
  int64_t seed = 1234;
  Precision precision = Precision::FP32;
  // The dtype the model's weights are held in between steps; bf16 keeps the fp32 master weights
  // in the optimizer only (Megatron-LM's bf16 params + fp32 main params).
  Precision weights = Precision::FP32;
  Recompute recompute = Recompute::None;
  KernelChoice kernels = KernelChoice::Auto;
  int64_t threads = 0;  // 0: all cores
  DeviceKind device = DeviceKind::Auto;
  int64_t eval_every = 0;    // validation loss every N steps; 0: never
  int64_t eval_batches = 0;  // validation batches per dataset; 0: all
  OnNonfinite on_nonfinite = OnNonfinite::Stop;
  SpikeConfig spike;
  std::vector<std::string> freeze;  // glob patterns over parameter names: not trained
  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "optimizer steps", Bounds::at_least(1));
    v.field("global_batch", global_batch, "sequences per optimizer step", Bounds::at_least(1));
    v.field("micro_batch", micro_batch, "sequences per forward/backward", Bounds::at_least(1));
    v.field("seq_len", seq_len, "tokens per sequence", Bounds::at_least(2));
    v.field("seed", seed, "seed for initialisation and data order", Bounds::at_least(0));
    v.choice("precision", precision, ChoiceNames<Precision>{{"fp32", Precision::FP32}, {"bf16", Precision::BF16}},
             "compute precision (bf16: autocast, fp32 master weights)");
    v.choice("weights", weights, ChoiceNames<Precision>{{"fp32", Precision::FP32}, {"bf16", Precision::BF16}},
             "dtype the weights are held in (bf16: 2 bytes per weight instead of 4, the fp32 master copy lives in the "
             "optimizer; the residual stream runs in bf16 as transformers' bf16 model; needs precision bf16)");
    v.choice("recompute", recompute, ChoiceNames<Recompute>{{"none", Recompute::None}, {"full", Recompute::Full}},
             "activation recomputation per decoder layer");
    v.choice("kernels", kernels, ChoiceNames<KernelChoice>{{"auto", KernelChoice::Auto}, {"reference", KernelChoice::Reference}},
             "fused operators: auto = the fastest implementation on the device (flash attention on the CPU), "
             "reference = ATen (slower; attention builds a [seq, seq] mask)");
    v.field("threads", threads, "compute threads; 0 = all cores", Bounds::at_least(0));
    v.choice("device", device,
             ChoiceNames<DeviceKind>{{"auto", DeviceKind::Auto}, {"cpu", DeviceKind::Cpu}, {"cuda", DeviceKind::Cuda}},
             "auto: a GPU per rank (node-local rank) if CUDA devices exist, else the CPU");
    v.field("eval_every", eval_every, "validation loss every N steps (data.datasets); 0 = never", Bounds::at_least(0));
    v.field("eval_batches", eval_batches, "validation batches per dataset and evaluation; 0 = all",
            Bounds::at_least(0));
    v.choice("on_nonfinite", on_nonfinite, ChoiceNames<OnNonfinite>{{"skip", OnNonfinite::Skip}, {"stop", OnNonfinite::Stop}},
             "a NaN/inf loss or gradient norm: skip = no update, counted in metrics; stop = save the last good state "
             "and end the run naming the step and the first rank that saw it");
    v.section("spike", spike, "loss and gradient-norm spikes");
    v.field("freeze", freeze,
            "parameters not trained: glob patterns (* and ?) over Hugging Face names, e.g. "
            "model.embed_tokens.weight or model.layers.*.mlp.*; each must match at least one parameter");
  }
};

// LoRA (Hu et al. 2021, as PEFT): each targeted linear W gets a trainable low-rank update,
// y = x W^T + (alpha / rank) * dropout(x) A^T B^T with A [rank, in], B [out, rank]; the base
// weights are frozen. A starts uniform(+-1/sqrt(in)) (PEFT's kaiming_uniform, a = sqrt(5)),
// B at zero, so training starts from the base model exactly.
struct LoraConfig {
  int64_t rank = 0;  // 0: off
  double alpha = 16;
  double dropout = 0;
  std::vector<std::string> targets{"q_proj", "k_proj", "v_proj", "o_proj"};
  int64_t init_seed = 0;
  template <class V>
  void visit(V& v) {
    v.field("rank", rank, "LoRA rank r; 0 = off (every parameter trains, unless train.freeze)", Bounds::at_least(0));
    v.field("alpha", alpha, "scale of the update: alpha / rank", Bounds::above(0));
    v.field("dropout", dropout, "dropout on the adapters' input while training", Bounds::between(0, 0.999));
    v.field("targets", targets,
            "linear layers that get adapters: any of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    v.field("init_seed", init_seed, "seed of the adapters' initialisation", Bounds::at_least(0));
  }
  double scale() const { return alpha / static_cast<double>(rank); }
  bool enabled() const { return rank > 0; }
};

struct OptimizerConfig {
  double lr = 3e-4;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_norms = false;
  bool decay_embeddings = false;
  double grad_clip = 1.0;  // 0: off
  template <class V>
  void visit(V& v) {
    v.field("lr", lr, "peak learning rate", Bounds::above(0));
    v.field("beta1", beta1, "Adam beta1", Bounds::between(0, 0.999999));
    v.field("beta2", beta2, "Adam beta2", Bounds::between(0, 0.999999));
    v.field("eps", eps, "Adam epsilon", Bounds::above(0));
    v.field("weight_decay", weight_decay, "decoupled weight decay", Bounds::at_least(0));
    v.field("decay_norms", decay_norms, "apply weight decay to norm weights");
    v.field("decay_embeddings", decay_embeddings, "apply weight decay to embeddings and lm_head");
    v.field("grad_clip", grad_clip, "clip the global gradient norm; 0 = off", Bounds::at_least(0));
  }
};

enum class ScheduleKind { Constant, Cosine, WSD };

struct ScheduleConfig {
  ScheduleKind type = ScheduleKind::Cosine;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;    // final lr = lr * min_lr_ratio
  double decay_fraction = 0.2;  // wsd: share of the steps spent decaying at the end
  template <class V>
  void visit(V& v) {
    v.choice("type", type,
             ChoiceNames<ScheduleKind>{{"constant", ScheduleKind::Constant}, {"cosine", ScheduleKind::Cosine}, {"wsd", ScheduleKind::WSD}},
             "learning-rate schedule after warm-up");
    v.field("warmup_steps", warmup_steps, "linear warm-up steps", Bounds::at_least(0));
    v.field("min_lr_ratio", min_lr_ratio, "final lr as a fraction of lr", Bounds::between(0, 1));
    v.field("decay_fraction", decay_fraction, "wsd: fraction of steps that decay", Bounds::between(0, 1));
  }
};

enum class DataFormat { Text, Tokens };

// One prepared dataset (`exatrain data prepare`) in the training blend.
struct DatasetConfig {
  std::string path;
  double weight = 1.0;
  int64_t validation_sequences = 0;
  double validation_fraction = 0;
  bool eval_only = false;  // never trained on; the whole dataset (or its split) is a validation set
  template <class V>
  void visit(V& v) {
    v.field("path", path, "a prepared dataset directory (relative paths: from the config file)");
    v.field("weight", weight, "relative share of the training sequences; 0 = evaluation only (as eval_only)",
            Bounds::at_least(0));
    v.field("validation_sequences", validation_sequences, "hold out this dataset's last N sequences",
            Bounds::at_least(0));
    v.field("validation_fraction", validation_fraction, "or hold out this fraction of them", Bounds::between(0, 0.5));
    v.field("eval_only", eval_only,
            "never trained on: a validation set only, all of it (or its validation_sequences / fraction); "
            "evaluated before the first step and after the last");
  }
  bool evaluation_only() const { return eval_only || weight == 0; }
};

// Either prepared datasets (the streaming loader) or one raw file (quick experiments).
struct DataConfig {
  std::vector<DatasetConfig> datasets;
  std::string tokenizer;
  int64_t prefetch = 4;
  std::string path;
  DataFormat format = DataFormat::Text;
  bool document_mask = false;  // attention and RoPE positions restart at each document of a packed row
  bool packing = true;         // false: one document per row, padded
  template <class V>
  void visit(V& v) {
    v.list("datasets", datasets, "prepared datasets, blended by weight (or data.path for one raw file)");
    v.field("document_mask", document_mask,
            "packed rows: attention stops at document boundaries and RoPE positions restart at 0 in each document; "
            "targets that begin a document are not trained on (data.datasets only)");
    v.field("packing", packing,
            "true: documents are concatenated and cut into rows; false: one document per row, padded with "
            "model.pad_token_id (padding not trained on; a longer document is truncated and counted in the log)");
    v.field("tokenizer", tokenizer, "the run's tokenizer.json: datasets must have been made with it; used for samples");
    v.field("prefetch", prefetch, "batches the loader thread prepares ahead; 0 = none", Bounds::at_least(0));
    v.field("path", path, "one raw training file instead of datasets (relative paths: from the config file)");
    v.choice("format", format, ChoiceNames<DataFormat>{{"text", DataFormat::Text}, {"tokens", DataFormat::Tokens}},
             "data.path: text = UTF-8 read as bytes (ids 0-255); tokens = uint32 little-endian ids");
  }
};

enum class ExportDtype { Auto, BF16, FP32 };
enum class OnWriteError { Stop, Warn };

struct CheckpointConfig {
  ExportDtype export_dtype = ExportDtype::Auto;
  std::string export_max_shard_size = "5GB";
  int64_t every = 0;
  int64_t keep = 2;
  bool async = false;
  bool save_final = true;
  OnWriteError on_error = OnWriteError::Stop;
  template <class V>
  void visit(V& v) {
    v.field("every", every, "save a resumable checkpoint every N steps (RUN/checkpoints/step_N); 0 = never",
            Bounds::at_least(0));
    v.field("keep", keep, "keep the newest K checkpoints; 0 = keep all", Bounds::at_least(0));
    v.field("async", async, "write checkpoints beside training (state copied to host, one save in flight)");
    v.field("save_final", save_final,
            "at the end, save a checkpoint and export it as a Hugging Face release into RUN/final");
    v.choice("on_error", on_error, ChoiceNames<OnWriteError>{{"stop", OnWriteError::Stop}, {"warn", OnWriteError::Warn}},
             "a checkpoint or metrics write that fails (full or read-only disk): stop = end the run cleanly (the "
             "previous checkpoint stays intact); warn = log it and go on training");
    v.choice("export_dtype", export_dtype,
             ChoiceNames<ExportDtype>{{"auto", ExportDtype::Auto}, {"bf16", ExportDtype::BF16}, {"fp32", ExportDtype::FP32}},
             "dtype of RUN/final's weights; auto = bf16 for bf16 runs, else fp32");
    v.field("export_max_shard_size", export_max_shard_size,
            "largest safetensors file of RUN/final: 5GB, 500MB, 10KB (decimal, as transformers); ranks write the "
            "shards in parallel");
  }
};

// Where the weights start: a fresh initialisation (init_std, seed), or released weights.
struct InitConfig {
  std::string from_hf;
  template <class V>
  void visit(V& v) {
    v.field("from_hf", from_hf,
            "start from a Hugging Face EXAONE-4 directory (config.json + safetensors); the model shape comes from "
            "its config.json, and model.* keys given as well must agree");
  }
};

struct LogConfig {
  int64_t every = 10;
  std::string level = "info";
  int64_t sample_tokens = 0;
  std::string sample_prompt;
  double sample_temperature = 0.8;
  template <class V>
  void visit(V& v) {
    v.field("every", every, "log metrics every N steps", Bounds::at_least(1));
    v.field("level", level, "log level: debug, info, warn, error");
    v.field("sample_tokens", sample_tokens, "after training, sample this many tokens; 0 = none", Bounds::at_least(0));
    v.field("sample_prompt", sample_prompt, "prompt for the sample (text data: bytes)");
    v.field("sample_temperature", sample_temperature, "sampling temperature; 0 = greedy", Bounds::at_least(0));
  }
};

struct RunConfig {
  ModelConfig model;
  ParallelConfig parallel;
  TrainConfig train;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  DataConfig data;
  InitConfig init;
  LoraConfig lora;
  CheckpointConfig checkpoint;
  LogConfig log;
  std::string source_path;  // the run config file (for relative paths)
  ConfigLocations locations;

  template <class V>
  void visit(V& v) {
    v.section("model", model, "the model (a preset plus overrides)");
    v.section("parallel", parallel, "tensor / pipeline / data parallel layout");
    v.section("train", train, "the training loop");
    v.section("optimizer", optimizer, "AdamW");
    v.section("schedule", schedule, "learning-rate schedule");
    v.section("data", data, "training data");
    v.section("init", init, "where the weights start");
    v.section("lora", lora, "low-rank adapters (fine-tuning with the base weights frozen)");
    v.section("checkpoint", checkpoint, "checkpoints and the final weights");
    v.section("log", log, "logging and sampling");
  }
  void validate() const;
};

// Built-in presets (configs/models/*.yaml, embedded at build time).
const std::map<std::string, std::string>& builtin_model_presets();
std::vector<std::string> preset_names();

// A preset by name (built-in) or by path to a YAML file with model keys at top level.
ModelConfig load_model_preset(const std::string& name_or_path, const std::string& relative_to = "");
// A run config (one of its sections at top level), not a model preset file.
bool is_run_config(const ConfigNode& root);
// Model keys from a file: either a preset file (keys at top level) or a run config (model: section,
// or init.from_hf's config.json).
ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Resolves a run config: preset <- run file <- overrides, then validate().
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

// A resolved config as a checkpoint recorded it (config.resolved.yaml's text): read as written,
// without resolving model.preset or init.from_hf again (the model section is complete).
RunConfig parse_resolved_config(const std::string& yaml_text, const std::string& origin);

// The resolved config as YAML (every key, defaults included).
std::string resolved_yaml(const RunConfig& config);
std::string resolved_yaml(const ModelConfig& config);
// Every model key with its value as text, flattened: "model.hidden_size" -> "64",
// "model.rope_scaling.factor" -> "8.0", "model.layer_types" -> "[sliding_attention, ...]".
std::map<std::string, std::string> model_key_values(const ModelConfig& config);
// All keys with type, default and description.
std::vector<std::string> config_key_docs();

const char* version_string();
const char* git_commit();

}  // namespace exatrain
