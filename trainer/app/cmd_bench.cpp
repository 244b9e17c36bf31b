// exatrain bench train (--preset NAME | --config FILE) [--batch B] [--seq-len T] [--steps S]
//                      [--warmup W] [--threads N] [--kernels auto|reference] [--json]
// Times fp32 training steps (forward, backward of the mean cross-entropy, the trainer's optimizer:
// gradient bucket, global norm, fused AdamW) of a randomly initialised model on random tokens, and
// the fp32 GEMM peak in the same run (for MFU).
// tests/bench/bench_train.py runs transformers on the same shapes and prints the ratio.
// exatrain bench attention [--heads H --kv-heads K --seq-len T --head-dim D --window W --document-tokens N ...]
// Times the attention operator alone (forward + backward): the CPU kernel against ATen.
// exatrain bench fused [--batch B --seq-len T --heads H --head-dim D --intermediate I --dtype fp32|bf16 ...]
// Times RoPE (on q) and SwiGLU alone (forward + backward): the fused CPU kernels against ATen.
// exatrain bench cross-entropy [--tokens N --vocab V --dtype fp32|bf16 --repeats R --threads N --json]
// Times the loss alone (forward + backward of the mean cross-entropy over N tokens) and measures
// its memory: the fused kernel (ops::cross_entropy) against ATen's at::cross_entropy_loss.
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "kernels/cross_entropy.h"
#include "kernels/flash_attention.h"
#include "kernels/ops.h"
#include "kernels/rope_swiglu.h"
#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/model/rope.h"
#include "trainer/optim/distributed_optimizer.h"
#include "trainer/plan/cost_model.h"
#include "trainer/train/flops.h"
#include "trainer/train/memory_tracker.h"

namespace exatrain {

namespace {

struct BenchOptions {
  std::string preset, config;
  int64_t batch = 4, seq_len = 256, steps = 10, warmup = 2;
  int threads = 0;
  std::string kernels = "auto";
  bool json = false;
};

void bench_train(const BenchOptions& o) {
  if (!o.preset.empty() == !o.config.empty()) fail("give exactly one of --preset NAME or --config FILE");
  set_compute_threads(o.threads);
  const ModelConfig c = o.preset.empty() ? load_model_config(o.config) : load_model_preset(o.preset);
  EXATRAIN_CHECK(o.batch >= 1 && o.seq_len >= 2 && o.steps >= 1 && o.warmup >= 0,
                 "need --batch >= 1, --seq-len >= 2, --steps >= 1, --warmup >= 0");
  if (o.seq_len > c.max_position_embeddings)
    fail("--seq-len {} exceeds the model's max_position_embeddings ({})", o.seq_len, c.max_position_embeddings);
  Exaone4Model model(c, at::TensorOptions().dtype(at::kFloat));
  init_parameters(model, 1234);
  model.set_requires_grad(true);
  model.set_kernels(o.kernels == "reference" ? KernelChoice::Reference : KernelChoice::Auto);
  OptimizerConfig opt;
  opt.grad_clip = 0;  // as the baseline: no clipping (the norm is still computed)
  DistributedOptimizer optimizer(model, opt, OptimizerGroups{}, /*zero_stage=*/0);
  at::manual_seed(1234);
  at::Tensor ids = at::randint(c.vocab_size, {o.batch, o.seq_len + 1}, at::kLong);
  at::Tensor inputs = ids.narrow(1, 0, o.seq_len), targets = ids.narrow(1, 1, o.seq_len);

  auto step = [&] {
    optimizer.zero_grad();
    at::Tensor loss = token_cross_entropy(model.forward(inputs), targets, {}, model.kernels());
    loss.backward();
    optimizer.reduce_gradients(opt.grad_clip);
    optimizer.step(1e-4);
  };
  for (int64_t i = 0; i < o.warmup; ++i) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.steps; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double peak = measure_gemm_peak_flops(1.0);

  const double steps_per_s = static_cast<double>(o.steps) / seconds;
  const double tokens_per_s = steps_per_s * static_cast<double>(o.batch * o.seq_len);
  CostLayout one_rank;  // the benchmark's step: one rank, one micro-batch
  one_rank.micro_batch = one_rank.global_batch = o.batch;
  one_rank.seq_len = o.seq_len;
  const double flops_per_step = estimate_cost(c, one_rank).model_flops_per_step;
  const double mfu = steps_per_s * flops_per_step / peak;
  if (o.json) {
    nlohmann::json j = {{"steps_per_s", steps_per_s},  {"tokens_per_s", tokens_per_s},
                        {"model_flops_per_step", flops_per_step}, {"gemm_peak_flops", peak},
                        {"mfu", mfu},                  {"threads", at::get_num_threads()},
                        {"batch", o.batch},            {"seq_len", o.seq_len}, {"steps", o.steps},
                        {"kernels", o.kernels}};
    std::cout << j.dump() << "\n";
    return;
  }
  std::cout << fmt::format("exatrain bench train: {} steps of batch {} x {} tokens on {} threads\n", o.steps, o.batch,
                           o.seq_len, at::get_num_threads());
  std::cout << fmt::format("  {:.3f} steps/s, {:.0f} tokens/s\n", steps_per_s, tokens_per_s);
  std::cout << fmt::format("  model FLOPs/step {:.3e}; fp32 GEMM peak {:.1f} GFLOP/s; MFU {:.1f}%\n", flops_per_step,
                           peak / 1e9, 100 * mfu);
}

struct AttentionBenchOptions {
  int64_t batch = 1, heads = 12, kv_heads = 4, seq_len = 4096, head_dim = 64, window = 512, repeats = 3;
  int64_t document_tokens = 0;  // > 0: document masks, documents of this many tokens (the last may be shorter)
  int threads = 0;
  std::string dtype = "fp32";
  bool json = false;
};

// Query-key pairs a causal (windowed) attention evaluates: the FLOPs are 4 x pairs x heads x
// head_dim forward and 2.5 times that backward (FlashAttention-2's count; docs/kernels.md).
double visible_pairs(int64_t seq, int64_t window) {
  const double s = static_cast<double>(seq), w = static_cast<double>(window);
  if (window <= 0 || window >= seq) return s * (s + 1) / 2;
  return w * (w + 1) / 2 + (s - w) * w;
}

// Forward + backward of the attention operator, our CPU kernel against the ATen reference (SDPA
// with its mask), same tensors, same threads, best of --repeats.
void bench_attention(const AttentionBenchOptions& o) {
  set_compute_threads(o.threads);
  EXATRAIN_CHECK(o.heads % o.kv_heads == 0, "--heads {} is not a multiple of --kv-heads {}", o.heads, o.kv_heads);
  const at::ScalarType dtype = o.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  at::manual_seed(1);
  const at::Tensor q = at::randn({o.batch, o.heads, o.seq_len, o.head_dim}).to(dtype);
  const at::Tensor k = at::randn({o.batch, o.kv_heads, o.seq_len, o.head_dim}).to(dtype);
  const at::Tensor v = at::randn({o.batch, o.kv_heads, o.seq_len, o.head_dim}).to(dtype);
  const at::Tensor g = at::randn({o.batch, o.heads, o.seq_len, o.head_dim}).to(dtype);
  ops::AttentionSpec spec;
  spec.window = o.window;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(o.head_dim));
  double pairs = visible_pairs(o.seq_len, o.window);
  if (o.document_tokens > 0) {
    spec.segments = (at::arange(o.seq_len, at::kLong) / o.document_tokens).to(at::kInt).expand({o.batch, o.seq_len});
    pairs = 0;
    for (int64_t t = 0; t < o.seq_len; t += o.document_tokens)
      pairs += visible_pairs(std::min(o.document_tokens, o.seq_len - t), o.window);
  }
  auto best_seconds = [&](ops::Impl impl) {
    double best = 1e30;
    for (int64_t r = 0; r < o.repeats; ++r) {
      at::Tensor qi = q.detach().requires_grad_(true), ki = k.detach().requires_grad_(true);
      at::Tensor vi = v.detach().requires_grad_(true);
      const auto t0 = std::chrono::steady_clock::now();
      ops::attention(qi, ki, vi, spec, impl).backward(g);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double cpu = best_seconds(ops::Impl::Cpu), reference = best_seconds(ops::Impl::Reference);
  const double flops = 3.5 * 4 * pairs * static_cast<double>(o.batch * o.heads * o.head_dim);
  if (o.json) {
    std::cout << nlohmann::json{{"cpu_s", cpu}, {"reference_s", reference}, {"ratio", reference / cpu},
                                {"cpu_gflops", flops / cpu / 1e9}, {"reference_gflops", flops / reference / 1e9},
                                {"isa", kernels::flash_attention_cpu_isa()}, {"threads", at::get_num_threads()},
                                {"seq_len", o.seq_len}, {"window", o.window}, {"dtype", o.dtype},
                                {"document_tokens", o.document_tokens}}
                     .dump()
              << "\n";
    return;
  }
  std::cout << fmt::format("exatrain bench attention: B{} H{}/{} T{} D{} W{} {}{}, forward + backward, best of {}, "
                           "{} threads\n", o.batch, o.heads, o.kv_heads, o.seq_len, o.head_dim, o.window, o.dtype,
                           o.document_tokens > 0 ? fmt::format(", documents of {} tokens", o.document_tokens) : "",
                           o.repeats, at::get_num_threads());
  std::cout << fmt::format("  cpu ({}): {:.3f} s ({:.1f} GFLOP/s); reference (ATen SDPA{}): {:.3f} s ({:.1f} GFLOP/s); "
                           "ratio {:.2f}x\n", kernels::flash_attention_cpu_isa(), cpu, flops / cpu / 1e9,
                           (o.window > 0 && o.window < o.seq_len) || o.document_tokens > 0 ? " + mask" : ", causal",
                           reference,
                           flops / reference / 1e9, reference / cpu);
}

// RoPE and SwiGLU at one layer's shapes (defaults: the small preset, 1 x 4,096 tokens): forward +
// backward of each operator, the fused CPU kernel against the ATen reference, same tensors, same
// threads, best of --repeats (the sides alternate). RoPE runs on q as the model holds it (the projection's
// [B, T, H, D] seen as [B, H, T, D]) with the model's tables.
struct FusedBenchOptions {
  int64_t batch = 1, seq_len = 4096, heads = 12, head_dim = 64, intermediate = 2048, repeats = 5;
  int threads = 0;
  std::string dtype = "fp32";
  bool json = false;
};

void bench_fused(const FusedBenchOptions& o) {
  set_compute_threads(o.threads);
  EXATRAIN_CHECK(o.head_dim % 2 == 0, "--head-dim {} must be even", o.head_dim);
  const at::ScalarType dtype = o.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  const int64_t B = o.batch, T = o.seq_len, H = o.heads, D = o.head_dim, I = o.intermediate;
  at::manual_seed(1);
  ModelConfig c;
  c.hidden_size = H * D;
  c.num_heads = H;
  c.rope_theta = 500000;
  const RopeTables tables = rope_tables(rope_inverse_frequencies(c), T);
  const at::Tensor x = at::randn({B, T, H, D}).to(dtype).transpose(1, 2), gx = at::randn({B, H, T, D}).to(dtype);
  const at::Tensor gate = (at::randn({B, T, I}) * 2).to(dtype), up = at::randn({B, T, I}).to(dtype);
  const at::Tensor gy = at::randn({B, T, I}).to(dtype);
  // The two sides alternate, repeat by repeat, and each keeps its best: a burst of other work on a
  // shared machine then slows one repeat of each side rather than all of one side.
  auto timed = [](const auto& step) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto rope_step = [&](ops::Impl impl) {
    at::Tensor xi = x.detach().requires_grad_(true);
    ops::rope(xi, tables, impl).backward(gx);
  };
  auto swiglu_step = [&](ops::Impl impl) {
    at::Tensor g = gate.detach().requires_grad_(true), u = up.detach().requires_grad_(true);
    ops::swiglu(g, u, impl).backward(gy);
  };
  double rope_cpu = 1e30, rope_ref = 1e30, swiglu_cpu = 1e30, swiglu_ref = 1e30;
  for (int64_t r = 0; r < o.repeats; ++r) {
    rope_cpu = std::min(rope_cpu, timed([&] { rope_step(ops::Impl::Cpu); }));
    rope_ref = std::min(rope_ref, timed([&] { rope_step(ops::Impl::Reference); }));
  }
  for (int64_t r = 0; r < o.repeats; ++r) {
    swiglu_cpu = std::min(swiglu_cpu, timed([&] { swiglu_step(ops::Impl::Cpu); }));
    swiglu_ref = std::min(swiglu_ref, timed([&] { swiglu_step(ops::Impl::Reference); }));
  }
  // Bytes the fused kernels move (each tensor once): RoPE reads x and writes y, then reads dy and
  // writes dx (tables aside); SwiGLU reads gate, up, writes out, then reads gate, up, dy and writes
  // dgate, dup.
  const double elem = dtype == at::kBFloat16 ? 2 : 4;
  const double rope_bytes = 4.0 * static_cast<double>(B * H * T * D) * elem;
  const double swiglu_bytes = 8.0 * static_cast<double>(B * T * I) * elem;
  if (o.json) {
    std::cout << nlohmann::json{{"rope_cpu_s", rope_cpu}, {"rope_reference_s", rope_ref},
                                {"rope_ratio", rope_ref / rope_cpu}, {"swiglu_cpu_s", swiglu_cpu},
                                {"swiglu_reference_s", swiglu_ref}, {"swiglu_ratio", swiglu_ref / swiglu_cpu},
                                {"isa", kernels::rope_swiglu_cpu_isa()}, {"threads", at::get_num_threads()},
                                {"dtype", o.dtype}, {"batch", B}, {"seq_len", T}, {"heads", H}, {"head_dim", D},
                                {"intermediate", I}}
                     .dump()
              << "\n";
    return;
  }
  std::cout << fmt::format("exatrain bench fused: B{} T{} {}, forward + backward, best of {}, {} threads, cpu kernel "
                           "{}\n", B, T, o.dtype, o.repeats, at::get_num_threads(), kernels::rope_swiglu_cpu_isa());
  std::cout << fmt::format("  rope   (H{} D{}):  cpu {:.2f} ms ({:.1f} GB/s); reference (ATen) {:.2f} ms; "
                           "ratio {:.2f}x\n", H, D, 1e3 * rope_cpu, rope_bytes / rope_cpu / 1e9, 1e3 * rope_ref,
                           rope_ref / rope_cpu);
  std::cout << fmt::format("  swiglu (I{}):     cpu {:.2f} ms ({:.1f} GB/s); reference (ATen) {:.2f} ms; "
                           "ratio {:.2f}x\n", I, 1e3 * swiglu_cpu, swiglu_bytes / swiglu_cpu / 1e9, 1e3 * swiglu_ref,
                           swiglu_ref / swiglu_cpu);
}

struct CrossEntropyBenchOptions {
  int64_t tokens = 2048, vocab = 102400, repeats = 3;
  int threads = 0;
  std::string dtype = "fp32";
  bool json = false;
};

// Forward + backward of the model's loss (token_cross_entropy, the mean over the tokens) on the
// same logits: the fused kernel (train.kernels: auto) against the ATen reference, best of
// --repeats, and the memory the tracker counts above the logits: what the loss keeps for
// backward (allocated after the forward) and the peak through forward and backward (the
// logits' gradient included: [tokens, vocab] in the logits' dtype, which any loss must produce).
void bench_cross_entropy(const CrossEntropyBenchOptions& o) {
  set_compute_threads(o.threads);
  MemoryTracker::install();
  const at::ScalarType dtype = o.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  at::manual_seed(1);
  const at::Tensor logits = (at::randn({1, o.tokens, o.vocab}) * 3).to(dtype);
  const at::Tensor targets = at::randint(o.vocab, {1, o.tokens}, at::kLong);
  struct Side {
    double seconds = 1e30;
    int64_t saved = 0, peak = 0;
  };
  auto measure = [&](KernelChoice kernels) {
    Side side;
    for (int64_t r = 0; r < o.repeats; ++r) {
      at::Tensor x = logits.detach().requires_grad_(true);
      const int64_t base = MemoryTracker::allocated();
      MemoryTracker::reset_peak();
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor loss = token_cross_entropy(x, targets, {}, kernels);
      const int64_t saved = MemoryTracker::allocated() - base;
      loss.backward();
      side.seconds = std::min(side.seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      side.saved = saved;
      side.peak = MemoryTracker::peak() - base;
    }
    return side;
  };
  const Side fused = measure(KernelChoice::Auto), reference = measure(KernelChoice::Reference);
  const double logits_bytes = static_cast<double>(logits.nbytes());
  if (o.json) {
    std::cout << nlohmann::json{{"fused_s", fused.seconds}, {"reference_s", reference.seconds},
                                {"ratio", reference.seconds / fused.seconds}, {"fused_saved_bytes", fused.saved},
                                {"reference_saved_bytes", reference.saved}, {"fused_peak_bytes", fused.peak},
                                {"reference_peak_bytes", reference.peak}, {"logits_bytes", logits.nbytes()},
                                {"isa", kernels::cross_entropy_cpu_isa()}, {"threads", at::get_num_threads()},
                                {"tokens", o.tokens}, {"vocab", o.vocab}, {"dtype", o.dtype}}
                     .dump()
              << "\n";
    return;
  }
  auto mb = [](double b) { return b / 1e6; };
  std::cout << fmt::format("exatrain bench cross-entropy: {} tokens x {} vocabulary, {} logits ({:.0f} MB), forward + "
                           "backward, best of {}, {} threads\n", o.tokens, o.vocab, o.dtype, mb(logits_bytes),
                           o.repeats, at::get_num_threads());
  for (const auto& [name, s] : {std::pair{"fused (" + std::string(kernels::cross_entropy_cpu_isa()) + ")", fused},
                                std::pair{std::string("reference (at::cross_entropy_loss)"), reference}})
    std::cout << fmt::format("  {}: {:.3f} s; kept for backward {:.0f} MB, peak above the logits {:.0f} MB "
                             "({:.2f} x the logits)\n", name, s.seconds, mb(static_cast<double>(s.saved)),
                             mb(static_cast<double>(s.peak)), static_cast<double>(s.peak) / logits_bytes);
  std::cout << fmt::format("  ratio {:.2f}x (reference time / fused time)\n", reference.seconds / fused.seconds);
}

}  // namespace

namespace {

void register_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto* train = bench->add_subcommand("train", "Time fp32 training steps and measure MFU");
  static BenchOptions o;
  train->add_option("--preset", o.preset, "built-in model preset");
  train->add_option("--config", o.config, "a preset file or run config");
  train->add_option("--batch", o.batch, "sequences per step")->capture_default_str();
  train->add_option("--seq-len", o.seq_len, "tokens per sequence")->capture_default_str();
  train->add_option("--steps", o.steps, "timed steps")->capture_default_str();
  train->add_option("--warmup", o.warmup, "untimed steps first")->capture_default_str();
  train->add_option("--threads", o.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  train->add_option("--kernels", o.kernels, "fused operators: auto (our kernels) or reference (ATen)")
      ->check(CLI::IsMember({"auto", "reference"}))
      ->capture_default_str();
  train->add_flag("--json", o.json, "print one JSON object");
  train->callback([] { bench_train(o); });

  auto* attn = bench->add_subcommand("attention", "Time the attention operator: our CPU kernel against ATen");
  static AttentionBenchOptions a;
  attn->add_option("--batch", a.batch, "sequences")->capture_default_str()->check(CLI::PositiveNumber);
  attn->add_option("--heads", a.heads, "query heads")->capture_default_str()->check(CLI::PositiveNumber);
  attn->add_option("--kv-heads", a.kv_heads, "key/value heads")->capture_default_str()->check(CLI::PositiveNumber);
  attn->add_option("--seq-len", a.seq_len, "tokens per sequence")->capture_default_str()->check(CLI::PositiveNumber);
  attn->add_option("--head-dim", a.head_dim, "head dimension")->capture_default_str()->check(CLI::PositiveNumber);
  attn->add_option("--window", a.window, "sliding window; 0 = full causal")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  attn->add_option("--document-tokens", a.document_tokens,
                   "document masks (data.document_mask) with documents of N tokens; 0 = none")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  attn->add_option("--dtype", a.dtype, "fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  attn->add_option("--repeats", a.repeats, "timed runs per side (best is kept)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  attn->add_option("--threads", a.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  attn->add_flag("--json", a.json, "print one JSON object");
  attn->callback([] { bench_attention(a); });

  auto* fused = bench->add_subcommand("fused", "Time RoPE and SwiGLU: our fused CPU kernels against ATen");
  static FusedBenchOptions f;
  fused->add_option("--batch", f.batch, "sequences")->capture_default_str()->check(CLI::PositiveNumber);
  fused->add_option("--seq-len", f.seq_len, "tokens per sequence")->capture_default_str()->check(CLI::PositiveNumber);
  fused->add_option("--heads", f.heads, "query heads (RoPE runs on q)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  fused->add_option("--head-dim", f.head_dim, "head dimension")->capture_default_str()->check(CLI::PositiveNumber);
  fused->add_option("--intermediate", f.intermediate, "MLP width (SwiGLU)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  fused->add_option("--dtype", f.dtype, "fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  fused->add_option("--repeats", f.repeats, "timed runs per side (best is kept)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  fused->add_option("--threads", f.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  fused->add_flag("--json", f.json, "print one JSON object");
  fused->callback([] { bench_fused(f); });

  auto* xent = bench->add_subcommand("cross-entropy", "Time and measure the loss: our fused kernel against ATen");
  static CrossEntropyBenchOptions x;
  xent->add_option("--tokens", x.tokens, "rows of logits")->capture_default_str()->check(CLI::PositiveNumber);
  xent->add_option("--vocab", x.vocab, "vocabulary (columns)")->capture_default_str()->check(CLI::PositiveNumber);
  xent->add_option("--dtype", x.dtype, "fp32 or bf16 logits")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  xent->add_option("--repeats", x.repeats, "timed runs per side (best is kept)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  xent->add_option("--threads", x.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  xent->add_flag("--json", x.json, "print one JSON object");
  xent->callback([] { bench_cross_entropy(x); });
}

CommandRegistration registration("bench", 90, register_bench_command);

}  // namespace

}  // namespace exatrain
