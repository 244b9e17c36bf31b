// The TP x PP x DP grid over the MPI world. Tensor parallelism varies fastest (a TP group is
// consecutive ranks, so it stays inside a node), then data parallelism, then pipeline stages:
//   world_rank = tp_rank + tp * (dp_rank + dp * pp_rank)
// The groups are passed explicitly to whatever needs them; there are no globals.
#pragma once

#include <memory>
#include <string>

#include "trainer/core/config.h"
#include "trainer/parallel/comm.h"

namespace exatrain {

struct Topology {
  int world_size = 1, world_rank = 0;
  int tp = 1, pp = 1, dp = 1;
  int tp_rank = 0, pp_rank = 0, dp_rank = 0;
  int local_rank = 0, local_size = 1;  // among the ranks on this node (MPI shared-memory split)
  std::unique_ptr<Communicator> world, tp_group, pp_group, dp_group;

  std::string describe() const;  // "tp 2 x pp 1 x dp 2 = 4 ranks; this is tp 1, pp 0, dp 1"
};

// Checks the layout against the world size, the model and the batch, printing every factor on
// failure, before any work; then splits the groups.
Topology make_topology(const RunConfig& config, int world_size, int world_rank, CommContext* context);

// This rank's index among the ranks on its node, and their number (MPI's shared-memory split;
// collective over the world): which GPU a rank uses.
struct NodeRanks {
  int local_rank = 0, local_size = 1;
};
NodeRanks node_ranks(int world_rank);

// The same checks without MPI (for tests and `config show`).
void check_layout(const RunConfig& config, int world_size);

}  // namespace exatrain
