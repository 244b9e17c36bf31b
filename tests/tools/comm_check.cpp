// Every collective of trainer/parallel/comm.h, in fp32 and bf16, against values worked out here
// from the ranks (the judge: small integers, exact in both dtypes, so any reduction order gives
// the same answer). Run under mpirun, one rank per device:
//   comm_check --device cpu    CPU tensors: the MPI path (tests/multirank/comm_check.sh)
//   comm_check --device cuda   CUDA tensors: the NCCL path, rank r on GPU r % GPUs (launch/gpu_check.sh)
//   comm_check --device cuda --stuck   rank 1 stops taking part: the job must end with the timeout
//                                      message within --timeout seconds instead of hanging
// Prints one line per case and "comm_check: N cases, M wrong"; exit 1 when any is wrong.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "trainer/parallel/comm.h"

using namespace exatrain;

namespace {

int cases = 0, wrong = 0;

void check(const Communicator& world, const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  cases += 1;
  const bool ok = got.sizes() == want.sizes() && at::equal(got.cpu().to(at::kFloat), want.to(at::kFloat));
  if (!ok) wrong += 1;
  if (world.rank() == 0 || !ok)
    std::printf("rank %d: %-34s %s\n", world.rank(), what.c_str(), ok ? "ok" : "WRONG");
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu";
  bool stuck = false;
  double timeout = 60;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) device = argv[++i];
    else if (a == "--stuck") stuck = true;
    else if (a == "--timeout" && i + 1 < argc) timeout = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: comm_check [--device cpu|cuda] [--stuck] [--timeout S]\n");
      return 2;
    }
  }
  MpiRuntime mpi(&argc, &argv);
  CommContext context;
  context.world_rank = mpi.world_rank();
  context.timeout_s = timeout;
  Communicator world("world", reinterpret_cast<intptr_t>(MPI_COMM_WORLD), &context);
  const int r = world.rank(), n = world.size();
  at::Device dev(at::kCPU);
  if (device == "cuda") {
    const int gpus = at::hasCUDA() ? static_cast<int>(c10::cuda::device_count()) : 0;
    if (gpus == 0) {
      std::fprintf(stderr, "comm_check: --device cuda but no CUDA device\n");
      return 2;
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(r % gpus));
    dev = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(r % gpus));
    world.init_nccl();  // at start-up, as the trainer does
  }
  if (stuck) {
    // Rank 1 never joins: every other rank's all-reduce must end the job with the timeout message.
    // On CUDA the all-reduce only queues; reading the result blocks the host until the watchdog
    // ends the process.
    if (r == 1) std::this_thread::sleep_for(std::chrono::seconds(static_cast<int64_t>(timeout) * 10));
    at::Tensor t = at::ones({16}, at::TensorOptions().dtype(at::kFloat).device(dev));
    world.all_reduce(t);
    const float sum = t.sum().item<float>();
    std::printf("rank %d: the all-reduce completed (sum %g) although rank 1 never joined\n", r, sum);
    return 1;
  }
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const std::string dt = dtype == at::kFloat ? "fp32" : "bf16";
    const auto on = at::TensorOptions().dtype(dtype).device(dev);
    const int64_t m = 1000;  // elements per rank part; not a multiple of anything in particular
    // x_r[i] = (r + 1) + (i % 7): small integers, exact in bf16 (sums stay below 256 for n <= 8)
    at::Tensor base = at::arange(m * n, at::kLong).remainder(7).to(at::kFloat);
    at::Tensor mine = (base + (r + 1)).to(on);

    at::Tensor sum = mine.clone();
    world.all_reduce(sum);
    check(world, "all_reduce sum " + dt, sum, base * n + n * (n + 1) / 2);

    at::Tensor mx = mine.clone();
    world.all_reduce(mx, ReduceOp::Max);
    check(world, "all_reduce max " + dt, mx, base + n);

    at::Tensor part = (at::full({m}, static_cast<float>(r)) + at::arange(m, at::kLong).remainder(5).to(at::kFloat)).to(on);
    at::Tensor gathered = world.all_gather(part, 0);
    std::vector<at::Tensor> want_parts;
    for (int k = 0; k < n; ++k)
      want_parts.push_back(at::full({m}, static_cast<float>(k)) + at::arange(m, at::kLong).remainder(5).to(at::kFloat));
    check(world, "all_gather dim 0 " + dt, gathered, at::cat(want_parts));

    at::Tensor scattered = world.reduce_scatter(mine, 0);
    check(world, "reduce_scatter dim 0 " + dt, scattered, (base * n + n * (n + 1) / 2).narrow(0, r * m, m));

    at::Tensor b = r == 0 ? mine.clone() : at::zeros_like(mine);
    world.broadcast(b, 0);
    check(world, "broadcast from 0 " + dt, b, base + 1);

    // A ring: send to r + 1, receive from r - 1.
    at::Tensor recv = at::zeros_like(part);
    world.send_recv(part, (r + 1) % n, recv, (r + n - 1) % n);
    check(world, "send_recv ring " + dt, recv, want_parts[static_cast<size_t>((r + n - 1) % n)]);

    // Non-blocking: two all-reduces in flight at once, driven by test() until both complete
    // (as gradient buckets are during backward).
    at::Tensor first = mine.clone(), second = (mine * 2).contiguous();
    PendingCollective a = world.start_all_reduce(first), c = world.start_all_reduce(second, ReduceOp::Max);
    while (!(a.test() & c.test())) std::this_thread::yield();
    check(world, "start_all_reduce sum " + dt, first, base * n + n * (n + 1) / 2);
    check(world, "start_all_reduce max " + dt, second, (base + n) * 2);
  }
  {
    // bf16 sums in fp32 on both backends, rounded once: rank 0 gives 256, the others 1. Summed in
    // bf16 (spacing 2 at 256), 256 + 1 rounds back to 256 at every step of a ring; in fp32 the
    // sum is 256 + n - 1, then rounded once (258 for 3 ranks).
    const int64_t m = 4096;  // long enough for NCCL to split it over several chunks and channels
    const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(dev);
    const at::Tensor want = at::full({m}, 256.0f + static_cast<float>(n - 1)).to(at::kBFloat16);
    at::Tensor x = at::full({m}, r == 0 ? 256.0f : 1.0f, bf16);
    world.all_reduce(x);
    check(world, "all_reduce bf16 sums in fp32", x, want);
    at::Tensor y = at::full({m * n}, r == 0 ? 256.0f : 1.0f, bf16);
    check(world, "reduce_scatter bf16 sums in fp32", world.reduce_scatter(y, 0), want);
  }
  {
    // Uneven reduce-scatter (ZeRO-1 buckets straddling the owned slices): rank r receives
    // counts[r] elements, rank 1 none at all; fp32 only (the gradient buffer's dtype).
    std::vector<int64_t> counts;
    int64_t total = 0, offset = 0;
    for (int k = 0; k < n; ++k) {
      counts.push_back(k == 1 ? 0 : 500 + 37 * k);
      if (k == r) offset = total;
      total += counts.back();
    }
    at::Tensor base = at::arange(total, at::kLong).remainder(7).to(at::kFloat);
    at::Tensor input = (base + (r + 1)).to(dev);
    at::Tensor output = at::full({counts[static_cast<size_t>(r)]}, -1.0f, at::TensorOptions().device(dev));
    PendingCollective p = world.start_reduce_scatter(input, output, counts);
    p.wait();
    check(world, "start_reduce_scatter uneven fp32", output,
          (base * n + n * (n + 1) / 2).narrow(0, offset, counts[static_cast<size_t>(r)]));
  }
  world.barrier();
  std::printf("rank %d: comm_check on %s, %d ranks: %d cases, %d wrong\n", r, device.c_str(), n, cases, wrong);
  return wrong == 0 ? 0 : 1;
}
