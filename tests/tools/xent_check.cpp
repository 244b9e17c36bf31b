// The vocab-parallel cross-entropy across real ranks (run under mpirun, any number of ranks):
// every rank builds the same full logits [rows, vocab] from one seed, keeps its slice of the
// vocabulary, and runs vocab_parallel_cross_entropy (trainer/parallel/tp_regions.h) with the
// fused kernel (cpu) and with the Megatron-style reference; the judge is the single-rank loss
// at::cross_entropy_loss over the whole vocabulary in float64 on the same values: the weighted
// loss, and this rank's slice of its gradient. Cases: fp32 and bf16 logits, an uneven vocabulary
// split, targets on every rank, an ignored row, rows near +-3e4. Both implementations must hand
// the same bytes to the same collectives (tp.all_reduce: 3 x rows x 4).
// Prints one line per case on rank 0 (any failing rank prints its own) and
// "xent_check: N cases, M wrong"; exit 1 when any is wrong.
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/tp_regions.h"

using namespace exatrain;

namespace {

int cases = 0, wrong = 0;

void check(int rank, const std::string& what, double err, double bound) {
  cases += 1;
  const bool ok = err <= bound;
  if (!ok) wrong += 1;
  if (rank == 0 || !ok)
    std::printf("rank %d: %-52s error %.2e bound %.1e %s\n", rank, what.c_str(), err, bound, ok ? "ok" : "WRONG");
}

double rel(const at::Tensor& got, const at::Tensor& want) {
  const double scale = std::max(1.0, want.abs().max().item<double>());
  return (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>() / scale;
}

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  CommContext context;
  context.world_rank = mpi.world_rank();
  context.timeout_s = 60;
  Communicator tp("tp", reinterpret_cast<intptr_t>(MPI_COMM_WORLD), &context);
  const int r = tp.rank(), n = tp.size();
  at::set_num_threads(1);
  const int64_t rows = 37, vocab = 1001 * n + 1;  // slices of 1001 and one of 1002: uneven
  // this rank's columns: equal parts, the last rank takes the remainder
  const int64_t base = vocab / n, start = base * r, cols = r == n - 1 ? vocab - start : base;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2024);
  at::Tensor full = at::randn({rows, vocab}, gen) * 4;
  full[5] += 3e4;
  full[6] -= 3e4;
  at::Tensor targets = at::randint(vocab, {rows}, gen, at::kLong);
  for (int q = 0; q < n; ++q) targets[q] = base * q + (q % 2 ? 0 : base - 1);  // a target on every rank, at an edge
  targets[7] = -100;  // ignored
  targets[8] = vocab - 1;
  const at::Tensor weights = at::rand({rows}, gen) + 0.25;

  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const std::string dt = dtype == at::kFloat ? "fp32" : "bf16";
    const at::Tensor values = full.to(dtype);  // what every rank computes on
    // The judge: one rank, the whole vocabulary, float64.
    at::Tensor whole = values.to(at::kDouble).requires_grad_(true);
    const at::Tensor want_loss = (at::cross_entropy_loss(whole, targets, {}, at::Reduction::None) * weights.to(at::kDouble)).sum();
    want_loss.backward();
    const at::Tensor want_grad = whole.grad().narrow(1, start, cols);
    std::map<std::string, int64_t> bytes_of[2];
    for (const ops::Impl impl : {ops::Impl::Cpu, ops::Impl::Reference}) {
      context.reset_bytes();
      at::Tensor local = values.narrow(1, start, cols).contiguous().requires_grad_(true);
      const at::Tensor loss = (vocab_parallel_cross_entropy(local, targets, start, tp, impl) * weights).sum();
      loss.backward();
      bytes_of[impl == ops::Impl::Cpu ? 0 : 1] = context.bytes;
      const std::string what = std::string(ops::impl_name(impl)) + " " + dt + " on " + std::to_string(n) + " ranks";
      // fp32 loss of a weighted sum over 37 rows: measured up to 8.5e-8 relative (2 and 3 ranks,
      // both implementations); the gradient in fp32 within 6.0e-8 of its largest entry (the
      // reference 6.0e-8 too), in bf16 one rounding (half an ulp: 2^-8 of a value in [1, 2);
      // measured 3.2e-3)
      check(r, what + ": loss", std::abs(loss.item<double>() - want_loss.item<double>()) / want_loss.item<double>(),
            3e-7);
      check(r, what + ": this rank's gradient", rel(local.grad(), want_grad),
            dtype == at::kFloat ? 3e-7 : 0.00390625 + 1e-6);
      check(r, what + ": gradient dtype", local.grad().scalar_type() == dtype ? 0 : 1, 0);
    }
    const bool same = bytes_of[0] == bytes_of[1] && bytes_of[0].size() == 1 && bytes_of[0]["tp.all_reduce"] == 3 * rows * 4;
    check(r, dt + ": the same bytes to tp.all_reduce (3 x rows x 4) for both", same ? 0 : 1, 0);
  }
  int all_wrong = wrong;
  MPI_Allreduce(MPI_IN_PLACE, &all_wrong, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (r == 0) std::printf("rank 0: xent_check on %d ranks: %d cases, %d wrong\n", n, cases, all_wrong);
  return all_wrong == 0 ? 0 : 1;
}
