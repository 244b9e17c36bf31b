// exatrain plan (--preset NAME | --config FILE) --gpus N --gpu NAME [--gpus-per-node 8]
//   [--seq-len S] [--global-batch B] [--top K] [--json] [--emit FILE] [--layout tp=8,pp=2,...]
// Every valid layout of the model on N GPUs, with its memory per GPU, predicted step time,
// tokens/s and MFU, best first (trainer/plan/cost_model.h; docs/planning.md).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "trainer/app/commands.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/config.h"
#include "trainer/core/config_tree.h"
#include "trainer/core/error.h"
#include "trainer/parallel/topology.h"
#include "trainer/plan/cost_model.h"
#include "trainer/plan/hardware.h"

namespace exatrain {

namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;
// CUDA context, NCCL's buffers and the caching allocator's fragmentation: a stated allowance,
// not modelled (docs/planning.md).
constexpr double kReserveBytes = 4 * kGiB;

struct PlanOptions {
  std::string preset, config, gpu = "h100-80g", hardware_file, emit, layout;
  std::vector<std::string> overrides;
  int64_t gpus = 0, gpus_per_node = 8, seq_len = 0, global_batch = 0;
  int top = 10;
  std::string variant = "exaone4";
  bool json = false, overlap = false;
};

struct Candidate {
  CostLayout layout;
  LayoutCost cost;
  StepTime time;
  bool fits = false;
  double memory = 0;  // bytes on the largest GPU, the reserve included
  double tokens_per_s_per_gpu = 0, tflops_per_gpu = 0, mfu = 0;
};

RunConfig base_config(const PlanOptions& o) {
  if (!o.preset.empty() == !o.config.empty()) fail("give exactly one of --preset NAME or --config FILE");
  RunConfig run;
  if (!o.preset.empty()) {
    if (!o.overrides.empty()) fail("--set applies to --config files; copy the preset into a config to override it");
    run.model = load_model_preset(o.preset);
    run.model.preset = o.preset;
    run.train.seq_len = 4096;
    run.train.global_batch = 1024;
    run.train.precision = Precision::BF16;
  } else if (is_run_config(load_yaml_file(o.config))) {
    run = load_run_config(o.config, o.overrides);
  } else {
    run.model = load_model_config(o.config, o.overrides);
    run.model.preset = o.config;
    run.train.seq_len = 4096;
    run.train.global_batch = 1024;
    run.train.precision = Precision::BF16;
  }
  if (o.seq_len > 0) run.train.seq_len = o.seq_len;
  if (o.global_batch > 0) run.train.global_batch = o.global_batch;
  return run;
}

Candidate evaluate(const RunConfig& run, const CostLayout& l, const Hardware& hw, const ModelVariant& v, int64_t gpus,
                   bool overlap) {
  Candidate c;
  c.layout = l;
  c.cost = estimate_cost(run.model, l, v);
  c.time = predict_step_time(run.model, l, c.cost, hw, v, overlap);
  c.memory = c.cost.largest().total() + kReserveBytes;
  c.fits = c.memory <= hw.memory_bytes;
  const double step = c.time.total(), n = static_cast<double>(gpus);
  c.tokens_per_s_per_gpu = static_cast<double>(l.global_batch * l.seq_len) / step / n;
  c.tflops_per_gpu = c.cost.model_flops_per_step / step / n / 1e12;
  c.mfu = c.cost.model_flops_per_step / step / n / hw.peak_flops;
  return c;
}

// The trainer's own validation of a layout (parallel/topology.cpp, core/config.cpp), or why not.
std::string layout_error(RunConfig run, const CostLayout& l, int64_t gpus) {
  run.parallel.tp = l.tp;
  run.parallel.pp = l.pp;
  run.parallel.dp = l.dp;
  run.parallel.zero = l.zero;
  run.parallel.sequence_parallel = l.sequence_parallel;
  run.parallel.pipeline_layers = l.pipeline_layers;
  run.train.micro_batch = l.micro_batch;
  try {
    check_layout(run, static_cast<int>(gpus));
    if (l.sequence_parallel && l.seq_len % l.tp != 0) return "seq_len is not divisible by tp (sequence parallelism)";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

CostLayout parse_layout(const std::string& text, const RunConfig& run, int64_t gpus) {
  CostLayout l = CostLayout::of(run, 1, 1, 1);
  l.pipeline_layers.clear();
  l.precision = run.train.precision;
  bool dp_given = false, sp_given = false;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) fail("--layout: '{}' is not key=value (e.g. tp=8,pp=2,zero=1)", item);
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    auto integer = [&] {
      try {
        size_t used = 0;
        const int64_t v = std::stoll(value, &used);
        if (used == value.size() && v >= 0) return v;
      } catch (const std::exception&) {
      }
      fail("--layout: {}={} is not a non-negative integer", key, value);
    };
    if (key == "tp") l.tp = integer();
    else if (key == "pp") l.pp = integer();
    else if (key == "dp") l.dp = integer(), dp_given = true;
    else if (key == "zero") {
      l.zero = integer();
      if (l.zero != 0 && l.zero != 1 && l.zero != 3)
        fail("--layout: zero={} (expected 0, 1, or 3 for FSDP / ZeRO-3, which only the planner models)", l.zero);
    }
    else if (key == "micro_batch") l.micro_batch = integer();
    else if (key == "virtual_stages") l.virtual_stages = integer();
    else if (key == "float8") l.float8 = integer() != 0;
    else if (key == "tp_overlap") {
      if (value == "0" || value == "none") l.tp_overlap = CostLayout::TpOverlap::None;
      else if (value == "1" || value == "all") l.tp_overlap = CostLayout::TpOverlap::All;
      else if (value == "forward") l.tp_overlap = CostLayout::TpOverlap::Forward;
      else fail("--layout: tp_overlap={} (expected none (0), all (1) or forward: TorchTitan's AsyncTP)", value);
    } else if (key == "elementwise") {
      if (value != "fused" && value != "eager")
        fail("--layout: elementwise={} (expected fused: exatrain's kernels, Megatron-LM, torch.compile; or eager: "
             "PyTorch's eager op sequence)", value);
      l.elementwise = value == "eager" ? CostLayout::Elementwise::Eager : CostLayout::Elementwise::Fused;
    } else if (key == "loss") {
      if (value != "fused" && value != "eager" && value != "megatron")
        fail("--layout: loss={} (expected fused: exatrain's cross-entropy kernel; eager: F.cross_entropy on fp32 "
             "logits; megatron: Megatron-LM's unfused vocab_parallel_cross_entropy)", value);
      l.loss = value == "eager" ? CostLayout::Loss::Eager : value == "megatron" ? CostLayout::Loss::Megatron
                                                                                : CostLayout::Loss::Fused;
    } else if (key == "attention") {
      if (value != "flash" && value != "unfused")
        fail("--layout: attention={} (expected flash, or unfused: the scores as [t, t] tensors in HBM)", value);
      l.attention = value == "unfused" ? CostLayout::Attention::Unfused : CostLayout::Attention::Flash;
    }
    else if (key == "weights") {
      if (value != "fp32" && value != "bf16") fail("--layout: weights={} (expected fp32 or bf16)", value);
      l.compute_dtype_weights = value == "bf16";
    } else if (key == "sp" || key == "sequence_parallel") l.sequence_parallel = integer() != 0, sp_given = true;
    else if (key == "recompute") {
      if (value != "none" && value != "full" && value != "op")
        fail("--layout: recompute={} (expected none, full, or op: TorchTitan's per-operator selective "
             "checkpointing, which only the planner models)", value);
      l.recompute = value == "full" ? Recompute::Full : Recompute::None;
      l.op_recompute = value == "op";
    } else {
      fail("--layout: unknown key '{}' (known: tp, pp, dp, zero, micro_batch, recompute, sp, weights, float8, "
           "tp_overlap, elementwise, loss, attention, virtual_stages)", key);
    }
  }
  if (l.tp < 1 || l.pp < 1 || l.micro_batch < 1 || l.virtual_stages < 1)
    fail("--layout: tp, pp, micro_batch and virtual_stages must be at least 1");
  if (l.virtual_stages > 1 && (l.pp < 2 || l.pp * l.virtual_stages > run.model.num_layers))
    fail("--layout: virtual_stages={} (the interleaved schedule) needs pp > 1 and at most {} layers' worth of "
         "chunks (pp x virtual_stages <= num_layers)", l.virtual_stages, run.model.num_layers);
  if (!dp_given) l.dp = gpus / (l.tp * l.pp);
  // As the enumeration: sequence parallelism whenever TP can split the sequence (same wire bytes,
  // less activation memory), unless sp=0 says otherwise.
  if (!sp_given) l.sequence_parallel = l.tp > 1 && l.seq_len % l.tp == 0;
  if (l.tp * l.pp * l.dp != gpus)
    fail("--layout: tp {} x pp {} x dp {} = {} but --gpus is {}", l.tp, l.pp, l.dp, l.tp * l.pp * l.dp, gpus);
  return l;
}

std::vector<Candidate> enumerate(const RunConfig& run, const PlanOptions& o, const Hardware& hw,
                                 const ModelVariant& v, int64_t& rejected) {
  std::vector<Candidate> out;
  const CostLayout base = CostLayout::of(run, 1, 1, 1);
  for (int64_t tp = 1; tp <= std::min(o.gpus, o.gpus_per_node); ++tp) {
    if (o.gpus % tp != 0 || o.gpus_per_node % tp != 0) continue;  // TP stays inside a node
    for (int64_t pp = 1; pp <= run.model.num_layers && tp * pp <= o.gpus; ++pp) {
      if (o.gpus % (tp * pp) != 0) continue;
      const int64_t dp = o.gpus / (tp * pp);
      for (int64_t zero : {0, 1}) {
        if (zero == 1 && dp == 1) continue;
        for (int64_t mb : {1, 2, 4, 8}) {
          for (const Recompute rc : {Recompute::None, Recompute::Full}) {
            CostLayout l = base;
            l.tp = tp, l.pp = pp, l.dp = dp, l.zero = zero, l.micro_batch = mb, l.recompute = rc;
            l.pipeline_layers.clear();
            l.sequence_parallel = tp > 1 && run.train.seq_len % tp == 0;
            if (!layout_error(run, l, o.gpus).empty()) continue;
            Candidate c = evaluate(run, l, hw, v, o.gpus, o.overlap);
            if (!c.fits) {
              ++rejected;
              continue;
            }
            out.push_back(std::move(c));
          }
        }
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    if (a.tokens_per_s_per_gpu != b.tokens_per_s_per_gpu) return a.tokens_per_s_per_gpu > b.tokens_per_s_per_gpu;
    return a.memory < b.memory;
  });
  return out;
}

nlohmann::json to_json(const Candidate& c) {
  const CostLayout& l = c.layout;
  const StageMemory& m = c.cost.largest();
  return {{"tp", l.tp}, {"pp", l.pp}, {"dp", l.dp}, {"zero", l.zero}, {"micro_batch", l.micro_batch},
          {"recompute", l.recompute == Recompute::Full ? "full" : l.op_recompute ? "op" : "none"},
          {"sequence_parallel", l.sequence_parallel}, {"virtual_stages", l.virtual_stages},
          {"fits", c.fits}, {"memory_gib_per_gpu", c.memory / kGiB},
          {"memory_parts_gib", {{"weights", m.weights / kGiB}, {"gradients", m.gradients / kGiB},
                                {"reduction_bucket", m.reduce_buffer / kGiB}, {"optimizer", m.optimizer / kGiB},
                                {"activations", m.activations / kGiB}, {"reserve", kReserveBytes / kGiB},
                                {"largest_stage", m.stage}, {"micro_batches_in_flight", m.in_flight}}},
          {"step_s", c.time.total()},
          {"step_parts_s", {{"compute", c.time.compute}, {"elementwise", c.time.elementwise}, {"tp_comm", c.time.tp_comm}, {"pp_bubble", c.time.pp_bubble},
                            {"pp_comm", c.time.pp_comm}, {"dp_comm", c.time.dp_comm},
                            {"optimizer", c.time.optimizer}}},
          {"tokens_per_s_per_gpu", c.tokens_per_s_per_gpu}, {"tflops_per_gpu", c.tflops_per_gpu},
          {"hardware_tflops_per_gpu", c.cost.hardware_flops_per_step / c.time.total() / 1e12 /
                                          static_cast<double>(l.tp * l.pp * l.dp)},
          {"mfu", c.mfu}};
}

// The chosen layout as a run config `exatrain train` and `config check` accept.
void emit_config(const PlanOptions& o, const RunConfig& run, const Candidate& c) {
  ConfigNode root = o.config.empty() || !is_run_config(load_yaml_file(o.config))
                        ? parse_yaml(fmt::format("model:\n  preset: {}\n", run.model.preset), "--emit")
                        : load_yaml_file(o.config);
  const CostLayout& l = c.layout;
  for (const std::string& kv :
       {fmt::format("parallel.tp={}", l.tp), fmt::format("parallel.pp={}", l.pp), fmt::format("parallel.dp={}", l.dp),
        fmt::format("parallel.zero={}", l.zero),
        fmt::format("parallel.sequence_parallel={}", l.sequence_parallel ? "true" : "false"),
        fmt::format("train.micro_batch={}", l.micro_batch), fmt::format("train.global_batch={}", l.global_batch),
        fmt::format("train.seq_len={}", l.seq_len),
        fmt::format("train.recompute={}", l.recompute == Recompute::Full ? "full" : "none"),
        fmt::format("train.precision={}", l.precision == Precision::BF16 ? "bf16" : "fp32"),
        fmt::format("train.weights={}", l.compute_dtype_weights ? "bf16" : "fp32")})
    apply_override(root, kv);
  const std::string header = fmt::format(
      "# exatrain plan: {} GPUs ({}), predicted {:.2f} s/step, {:.0f} tokens/s per GPU, MFU {:.1f}%, {:.1f} GiB per "
      "GPU.\n# Add data: (data.path or data.datasets) before training.\n",
      o.gpus, o.gpu, c.time.total(), c.tokens_per_s_per_gpu, 100 * c.mfu, c.memory / kGiB);
  write_file_atomically(o.emit, header + to_yaml(root));
}

void print_table(const std::vector<Candidate>& shown, const Hardware& hw) {
  std::cout << fmt::format("{:>3} {:>3} {:>4} {:>4} {:>3} {:>9} {:>3} {:>9} {:>8} {:>12} {:>9} {:>6}\n", "tp", "pp",
                           "dp", "zero", "mb", "recompute", "sp", "GiB/GPU", "step s", "tok/s/GPU", "TFLOP/s", "MFU");
  for (const Candidate& c : shown) {
    const CostLayout& l = c.layout;
    std::cout << fmt::format("{:>3} {:>3} {:>4} {:>4} {:>3} {:>9} {:>3} {:>9.1f} {:>8.2f} {:>12.0f} {:>9.1f} "
                             "{:>5.1f}%{}\n", l.tp, l.pp, l.dp, l.zero, l.micro_batch,
                             l.recompute == Recompute::Full ? "full" : l.op_recompute ? "op" : "none",
                             l.sequence_parallel ? "yes" : "no", c.memory / kGiB, c.time.total(),
                             c.tokens_per_s_per_gpu, c.tflops_per_gpu, 100 * c.mfu,
                             c.fits ? "" : fmt::format("  does not fit in {:.0f} GB", hw.memory_bytes / 1e9));
  }
}

void plan(const PlanOptions& o) {
  const RunConfig run = base_config(o);
  Hardware hw = load_hardware(o.gpu, o.hardware_file);
  hw.gpus_per_node = o.gpus_per_node;
  ModelVariant v;
  if (o.variant == "llama") v.qk_norm = false, v.full_attention = true;
  if (o.variant == "gpt") v.gated_mlp = false, v.qk_norm = false, v.full_attention = true, v.rope = false;
  std::vector<Candidate> shown;
  int64_t rejected = 0;
  if (!o.layout.empty()) {
    const CostLayout l = parse_layout(o.layout, run, o.gpus);
    if (const std::string why = layout_error(run, l, o.gpus); !why.empty()) fail("--layout {}: {}", o.layout, why);
    if (l.float8 && hw.fp8_peak_flops <= 0)
      fail("--layout float8=1: {} has no fp8_dense_tflops in its hardware file", o.gpu);
    shown.push_back(evaluate(run, l, hw, v, o.gpus, o.overlap));
  } else {
    shown = enumerate(run, o, hw, v, rejected);
    if (shown.empty())
      fail("no layout of {} on {} x {} fits ({} valid layouts need more than {:.0f} GB); use more GPUs, a larger GPU "
           "or a shorter --seq-len", run.model.preset, o.gpus, o.gpu, rejected, hw.memory_bytes / 1e9);
    if (static_cast<int64_t>(shown.size()) > o.top) shown.resize(static_cast<size_t>(o.top));
  }
  if (!o.emit.empty()) {
    const CostLayout& l = shown.front().layout;
    if (l.zero == 3 || l.op_recompute || l.float8 || l.elementwise == CostLayout::Elementwise::Eager ||
        l.loss != CostLayout::Loss::Fused || l.attention != CostLayout::Attention::Flash || l.virtual_stages > 1)
      fail("--emit: zero=3, recompute=op, float8=1, elementwise=eager, loss=eager|megatron, attention=unfused and "
           "virtual_stages > 1 are modelled for published runs; exatrain cannot train with them");
    emit_config(o, run, shown.front());
  }
  if (o.json) {
    nlohmann::json layouts = nlohmann::json::array();
    for (const Candidate& c : shown) layouts.push_back(to_json(c));
    std::cout << nlohmann::json{{"model", run.model.preset}, {"gpus", o.gpus}, {"gpu", o.gpu},
                                {"seq_len", run.train.seq_len}, {"global_batch", run.train.global_batch},
                                {"layouts", layouts}}.dump(2)
              << "\n";
    return;
  }
  std::cout << fmt::format("{} on {} x {} ({} per node), {} sequences x {} tokens per step, {}{}\n", run.model.preset,
                           o.gpus, o.gpu, o.gpus_per_node, run.train.global_batch, run.train.seq_len,
                           run.train.precision == Precision::BF16 ? "bf16" : "fp32",
                           o.layout.empty() ? fmt::format("; {} fitting layouts shown best first ({} more do not fit)",
                                                          shown.size(), rejected)
                                            : "");
  print_table(shown, hw);
  if (!o.emit.empty()) std::cout << fmt::format("wrote {} (the first layout above)\n", o.emit);
}

void register_plan_command(CLI::App& app) {
  static PlanOptions o;
  auto* cmd = app.add_subcommand(
      "plan", "Every valid layout of a model on N GPUs: memory per GPU, predicted step time, tokens/s and MFU, best "
              "first (docs/planning.md)");
  cmd->add_option("--preset", o.preset, "built-in model preset: " + fmt::format("{}", fmt::join(preset_names(), ", ")));
  cmd->add_option("--config", o.config, "a run config (its train: batch, precision) or a model YAML");
  cmd->add_option("--set", o.overrides, "override a key of --config: --set train.seq_len=8192");
  cmd->add_option("--gpus", o.gpus, "GPUs in the job")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--gpu", o.gpu, "GPU kind from configs/hardware.yaml (h100-80g, h200-141g, a100-80g)");
  cmd->add_option("--hardware", o.hardware_file, "another hardware YAML of configs/hardware.yaml's shape");
  cmd->add_option("--gpus-per-node", o.gpus_per_node, "GPUs per node: TP stays inside a node")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", o.seq_len, "tokens per sequence (default: the config's, or 4096)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--global-batch", o.global_batch, "sequences per step (default: the config's, or 1024)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--top", o.top, "layouts to show")->check(CLI::PositiveNumber);
  cmd->add_option("--layout", o.layout,
                  "evaluate one layout: tp=8,pp=2[,dp=..,zero=1,micro_batch=1,recompute=full,sp=0|1]; dp "
                  "defaults to gpus / (tp x pp), sp to 1 when tp > 1; zero=3 (FSDP) and recompute=op "
                  "(TorchTitan's selective checkpointing), weights=bf16 (ZeRO-1 gathers bf16 weights, as "
                  "Megatron-LM), float8=1 (the layers' linears in fp8, with torchao's scaling and casts), "
                  "elementwise=eager (PyTorch's unfused eager ops; default fused: exatrain's kernels, Megatron-LM, "
                  "torch.compile), loss=eager|megatron (unfused fp32 cross-entropy; default fused), "
                  "attention=unfused (scores in HBM, before FlashAttention) and virtual_stages=V (the interleaved "
                  "1F1B schedule, V model chunks per pipeline rank) describe published runs exatrain cannot "
                  "train; under --overlap-comm, "
                  "tp_overlap=none|0 keeps TP communication exposed, forward hides the forward passes' (TorchTitan's "
                  "AsyncTP), all|1 (default) all of it (Megatron-LM's --tp-comm-overlap)");
  cmd->add_option("--emit", o.emit, "write the best (or --layout's) layout as a run config YAML");
  cmd->add_option("--variant", o.variant,
                  "model variant: exaone4 (SwiGLU, q/k norms, sliding layers), llama (SwiGLU, full attention), gpt "
                  "(non-gated MLP of intermediate_size, full attention, learned positions: no RoPE)")
      ->check(CLI::IsMember({"exaone4", "llama", "gpt"}));
  cmd->add_flag("--overlap-comm", o.overlap,
                "predict a trainer that hides communication behind compute (Megatron-LM's overlap options, FSDP's "
                "prefetch); exatrain overlaps only its DP reduction, so leave it off for exatrain runs");
  cmd->add_flag("--json", o.json, "print {\"layouts\": [...]} as JSON, best first");
  cmd->callback([] { plan(o); });
}

CommandRegistration registration("plan", 25, register_plan_command);

}  // namespace

}  // namespace exatrain
