// exatrain bench comm [--bytes 1M,16M,64M] [--ops all_reduce,reduce_scatter,all_gather,send_recv]
//                     [--iters N] [--warmup W] [--device cpu|cuda] [--timeout S] [--json]
// Times the trainer's own collectives (trainer/parallel/comm.h: MPI for CPU tensors, NCCL for CUDA
// tensors) over every rank of the job, started by mpirun or srun, and prints their bandwidth as
// NVIDIA's nccl-tests do: algbw = bytes / time, busbw = algbw x the ring factor (all_reduce
// 2 (n - 1) / n, reduce_scatter and all_gather (n - 1) / n, send_recv 1), where bytes is the
// whole buffer (all_reduce's tensor, reduce_scatter's input, all_gather's output; send_recv: what
// each rank sends to the next rank of a ring while it receives from the previous one). busbw is
// the figure configs/hardware.yaml's link bandwidths and `exatrain plan` are compared with (the
// planner prices a collective as its ring traffic over the link). Each timed call starts after a
// barrier; its time is the slowest rank's; the median over --iters calls is reported.
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/topology.h"

namespace exatrain {

namespace {

struct CommBenchOptions {
  std::vector<std::string> sizes{"1M", "16M", "64M"};
  std::vector<std::string> ops{"all_reduce", "reduce_scatter", "all_gather", "send_recv"};
  int iters = 10, warmup = 2;
  std::string device = "cpu";
  double timeout_s = 120;
  bool json = false;
};

// "64M" -> 64 x 2^20; plain digits are bytes; K, M, G are binary (as the trainer's MiB).
int64_t parse_bytes(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    fail("--bytes: '{}' is not a size (e.g. 4096, 512K, 64M, 1G)", text);
  }
  const std::string unit = text.substr(used);
  const double scale = unit.empty() || unit == "B" ? 1.0
                       : unit == "K"               ? 1024.0
                       : unit == "M"               ? 1024.0 * 1024
                       : unit == "G"               ? 1024.0 * 1024 * 1024
                                                   : -1.0;
  if (scale < 0 || value <= 0) fail("--bytes: '{}' is not a size (e.g. 4096, 512K, 64M, 1G)", text);
  return static_cast<int64_t>(value * scale);
}

double ring_factor(const std::string& op, int n) {
  if (op == "all_reduce") return 2.0 * (n - 1) / n;
  if (op == "send_recv") return 1.0;
  return static_cast<double>(n - 1) / n;  // reduce_scatter, all_gather
}

void bench_comm(const CommBenchOptions& o) {
  // Options first: every rank finds the same mistake before any collective starts.
  for (const auto& op : o.ops)
    if (op != "all_reduce" && op != "reduce_scatter" && op != "all_gather" && op != "send_recv")
      fail("--ops: unknown operation '{}' (all_reduce, reduce_scatter, all_gather, send_recv)", op);
  std::vector<int64_t> sizes;
  for (const auto& text : o.sizes) sizes.push_back(parse_bytes(text));
  MpiRuntime mpi(nullptr, nullptr);
  const int n = mpi.world_size(), rank = mpi.world_rank();
  if (n < 2)
    fail("bench comm needs 2 or more ranks (a collective over one rank moves nothing); start it with "
         "mpirun -n N or srun -n N");
  CommContext context;
  context.world_rank = rank;
  context.timeout_s = o.timeout_s;
  Communicator world("world", reinterpret_cast<intptr_t>(MPI_COMM_WORLD), &context);
  at::TensorOptions options = at::TensorOptions().dtype(at::kFloat);
  const bool cuda = o.device == "cuda";
  if (cuda) {
    if (!at::hasCUDA() || c10::cuda::device_count() == 0) fail("--device cuda, but this machine has no usable GPU");
    const int local = node_ranks(rank).local_rank;
    const int gpus = static_cast<int>(c10::cuda::device_count());
    if (local >= gpus) fail("rank {} is local rank {} of its node, which has {} GPUs: start one rank per GPU", rank, local, gpus);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(local));
    options = options.device(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local)));
    world.init_nccl();
  }
  auto sync = [&] {
    if (cuda) c10::cuda::device_synchronize();
  };

  nlohmann::json results = nlohmann::json::array();
  if (rank == 0 && !o.json)
    std::cout << fmt::format("exatrain bench comm: {} ranks, {} tensors ({}), median of {} calls after {} warm-up; "
                             "busbw as nccl-tests\n  {:<15} {:>12} {:>10} {:>12} {:>12}\n",
                             n, o.device, cuda ? "NCCL" : "MPI", o.iters, o.warmup, "operation", "bytes", "ms",
                             "algbw GB/s", "busbw GB/s")
              << std::flush;
  for (const auto& op : o.ops) {
    for (const int64_t requested : sizes) {
      // A whole number of fp32 elements per rank, so every rank's share is equal.
      const int64_t elements = std::max<int64_t>(1, requested / 4 / n) * n;
      const int64_t bytes = elements * 4;
      at::Tensor full = at::zeros({elements}, options);  // sums of zeros stay zero over the calls
      at::Tensor part = at::zeros({elements / n}, options);
      at::Tensor received = at::empty({elements}, options);
      auto call = [&] {
        if (op == "all_reduce") {
          world.all_reduce(full);
        } else if (op == "reduce_scatter") {
          (void)world.reduce_scatter(full, 0);
        } else if (op == "all_gather") {
          (void)world.all_gather(part, 0);
        } else {
          world.send_recv(full, (rank + 1) % n, received, (rank + n - 1) % n);
        }
        sync();
      };
      for (int i = 0; i < o.warmup; ++i) call();
      std::vector<double> times;
      for (int i = 0; i < o.iters; ++i) {
        world.barrier();
        const auto t0 = std::chrono::steady_clock::now();
        call();
        at::Tensor slowest =
            at::full({1}, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                     at::TensorOptions().dtype(at::kDouble));
        world.all_reduce(slowest, ReduceOp::Max);  // on the host: not part of the timed call
        times.push_back(slowest.item<double>());
      }
      std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
      const double seconds = times[times.size() / 2];
      const double algbw = static_cast<double>(bytes) / seconds / 1e9;
      const double busbw = algbw * ring_factor(op, n);
      results.push_back({{"op", op}, {"bytes", bytes}, {"seconds", seconds}, {"algbw_gb_s", algbw},
                         {"busbw_gb_s", busbw}});
      if (rank == 0 && !o.json)
        std::cout << fmt::format("  {:<15} {:>12} {:>10.3f} {:>12.3f} {:>12.3f}\n", op, bytes, seconds * 1e3, algbw,
                                 busbw)
                  << std::flush;
    }
  }
  if (rank == 0 && o.json)
    std::cout << nlohmann::json{{"ranks", n}, {"device", o.device}, {"iters", o.iters}, {"results", results}}.dump()
              << "\n";
}

void register_bench_comm(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");  // cmd_bench.cpp registers it first (order 90)
  auto* comm = bench->add_subcommand(
      "comm", "Time the trainer's collectives over the job's ranks (mpirun/srun): bandwidth as nccl-tests report it");
  static CommBenchOptions o;
  comm->add_option("--bytes", o.sizes, "buffer sizes (K, M, G: binary), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  comm->add_option("--ops", o.ops, "operations, comma-separated")->delimiter(',')->capture_default_str();
  comm->add_option("--iters", o.iters, "timed calls per operation and size (the median is kept)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  comm->add_option("--warmup", o.warmup, "untimed calls first")->check(CLI::NonNegativeNumber)->capture_default_str();
  comm->add_option("--device", o.device, "cpu (MPI) or cuda (NCCL, one GPU per rank)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  comm->add_option("--timeout", o.timeout_s, "seconds before a stuck collective aborts the job")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  comm->add_flag("--json", o.json, "rank 0 prints one JSON object: {ranks, device, iters, results: [...]}");
  comm->callback([] { bench_comm(o); });
}

CommandRegistration registration("bench comm", 91, register_bench_comm);

}  // namespace

}  // namespace exatrain
