// Collectives beyond 32-bit MPI counts, for real: an all-reduce of a uint8 tensor of
// 2^31 + 64 elements (2 GiB per rank) over the world, every element checked, and a broadcast
// of the same size. Run under mpirun -n 2 (tests/multirank/large_count.sh).
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>

#include "trainer/parallel/comm.h"

using namespace exatrain;

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  CommContext context;
  context.world_rank = mpi.world_rank();
  context.timeout_s = 600;
  Communicator world("world", reinterpret_cast<intptr_t>(MPI_COMM_WORLD), &context);
  const int64_t n = (int64_t{1} << 31) + 64;
  at::Tensor t = at::full({n}, static_cast<uint8_t>(world.rank() + 1), at::kByte);
  world.all_reduce(t);
  const int expected = world.size() * (world.size() + 1) / 2;
  // Checked in slices: a [n] bool temporary would double the memory.
  auto count_wrong = [&](int64_t begin, int64_t length, int value) {
    int64_t bad = 0;
    for (int64_t o = begin; o < begin + length; o += int64_t{1} << 26)
      bad += t.narrow(0, o, std::min(int64_t{1} << 26, begin + length - o)).ne(value).sum().item<int64_t>();
    return bad;
  };
  const int64_t wrong = count_wrong(0, n, expected);
  t.fill_(static_cast<uint8_t>(world.rank() == 0 ? 7 : 0));
  t.narrow(0, n - 8, 8).fill_(static_cast<uint8_t>(world.rank() == 0 ? 9 : 0));
  world.broadcast(t, 0);
  const int64_t wrong_bcast = count_wrong(0, n - 8, 7) + count_wrong(n - 8, 8, 9);
  std::printf("rank %d: all_reduce of %lld uint8 elements (> 2^31): %lld wrong; broadcast: %lld wrong\n", world.rank(),
              static_cast<long long>(n), static_cast<long long>(wrong), static_cast<long long>(wrong_bcast));
  return wrong == 0 && wrong_bcast == 0 ? 0 : 1;
}
