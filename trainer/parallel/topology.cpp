#include "trainer/parallel/topology.h"

#include <mpi.h>

#include "trainer/core/error.h"

namespace exatrain {

std::string Topology::describe() const {
  return fmt::format("tp {} x pp {} x dp {} = {} ranks; this is rank {} (tp {}, pp {}, dp {})", tp, pp, dp, world_size,
                     world_rank, tp_rank, pp_rank, dp_rank);
}

void check_layout(const RunConfig& c, int world_size) {
  const auto& p = c.parallel;
  const int64_t dp = p.dp == 0 ? world_size / std::max<int64_t>(1, p.tp * p.pp) : p.dp;
  const std::string layout = fmt::format("parallel.tp ({}) x parallel.pp ({}) x parallel.dp ({}{})", p.tp, p.pp, dp,
                                         p.dp == 0 ? ", auto" : "");
  const auto& m = c.model;
  if (m.num_heads % p.tp != 0)
    fail("{}: model.num_heads ({}) is not divisible by tp ({})", layout, m.num_heads, p.tp);
  if (m.num_kv_heads % p.tp != 0 && p.tp % m.num_kv_heads != 0)
    fail("{}: model.num_kv_heads ({}) and tp ({}) must divide one another (KV heads are split, or replicated "
         "when there are fewer than tp)", layout, m.num_kv_heads, p.tp);
  if (m.vocab_size % p.tp != 0)
    fail("{}: model.vocab_size ({}) is not divisible by tp ({}); pad the vocabulary", layout, m.vocab_size, p.tp);
  if (m.intermediate_size % p.tp != 0)
    fail("{}: model.intermediate_size ({}) is not divisible by tp ({})", layout, m.intermediate_size, p.tp);
  if (p.pp > m.num_layers)
    fail("{}: {} pipeline stages but only {} layers (model.num_layers)", layout, p.pp, m.num_layers);
  if (dp > 0 && c.train.global_batch % (c.train.micro_batch * dp) != 0)
    fail("{}: train.global_batch ({}) is not divisible by train.micro_batch ({}) x dp ({})", layout,
         c.train.global_batch, c.train.micro_batch, dp);
  // Last, the world size (the model and batch rules above do not depend on it).
  if (p.dp == 0 && (dp == 0 || world_size % (p.tp * p.pp) != 0))
    fail("parallel.tp ({}) x parallel.pp ({}) = {} does not divide the job's {} ranks (parallel.dp: auto); launch a "
         "multiple of {} ranks (launch/local.sh -n N) or change the layout", p.tp, p.pp, p.tp * p.pp, world_size,
         p.tp * p.pp);
  if (p.tp * p.pp * dp != world_size)
    fail("{} = {} but the job has {} ranks; launch tp*pp*dp ranks or change the layout", layout, p.tp * p.pp * dp,
         world_size);
}

NodeRanks node_ranks(int world_rank) {
  NodeRanks r;
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &r.local_rank);
  MPI_Comm_size(node, &r.local_size);
  MPI_Comm_free(&node);
  return r;
}

Topology make_topology(const RunConfig& c, int world_size, int world_rank, CommContext* context) {
  check_layout(c, world_size);
  Topology t;
  t.world_size = world_size;
  t.world_rank = world_rank;
  t.tp = static_cast<int>(c.parallel.tp);
  t.pp = static_cast<int>(c.parallel.pp);
  t.dp = world_size / (t.tp * t.pp);
  t.tp_rank = world_rank % t.tp;
  t.dp_rank = (world_rank / t.tp) % t.dp;
  t.pp_rank = world_rank / (t.tp * t.dp);
  auto split = [&](const char* name, int color, int key) {
    MPI_Comm comm;
    MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm);
    return std::make_unique<Communicator>(name, reinterpret_cast<intptr_t>(comm), context);
  };
  t.world = std::make_unique<Communicator>("world", reinterpret_cast<intptr_t>(MPI_COMM_WORLD), context);
  // This node's ranks (under mpirun and srun alike): the GPU index and the memory check use them.
  const NodeRanks node = node_ranks(world_rank);
  t.local_rank = node.local_rank;
  t.local_size = node.local_size;
  t.tp_group = split("tp", t.dp_rank + t.dp * t.pp_rank, t.tp_rank);
  t.dp_group = split("dp", t.tp_rank + t.tp * t.pp_rank, t.dp_rank);
  t.pp_group = split("pp", t.tp_rank + t.tp * t.dp_rank, t.pp_rank);
  return t;
}

}  // namespace exatrain
