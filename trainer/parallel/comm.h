// Collectives over one process group, on tensors (counts come from the tensor, never from a
// byte size). CPU tensors go through MPI; CUDA tensors through NCCL (nccl_comm.h), on a
// communicator created at start-up (init_nccl). Both backends reduce bf16 in fp32 and round the
// result once, so they agree. Every MPI operation is non-blocking underneath and polled against
// a deadline; NCCL operations are stream-ordered and watched by a thread (collective_watchdog.h).
// Either way a collective that does not finish within the timeout aborts the whole job, naming
// the operation, the group, the step and the rank, instead of hanging.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace exatrain {

enum class CommOp { AllReduce, AllGather, ReduceScatter, Broadcast, SendRecv, Count };
const char* comm_op_name(CommOp op);
enum class ReduceOp { Sum, Max };
class Communicator;
class CollectiveWatchdog;
class NcclGroup;
struct NcclWork;

// A collective that was started and not yet waited for (Communicator::start_*), so the caller
// computes while it runs (gradient buckets reduce during backward). CPU tensors: MPI requests;
// MPI advances non-blocking collectives only inside MPI calls, so test() both asks and drives
// them. CUDA tensors: the collective is queued on the group's NCCL stream; test() says whether
// the device has finished it, and wait() orders the caller's current stream after it without
// blocking the host. The buffers stay alive until the operation completes. Destroying one that
// was never waited for leaks its buffers on purpose (MPI or NCCL may still write into them; only
// an error unwinds past a pending collective, and the process ends soon after).
class PendingCollective {
 public:
  PendingCollective();
  PendingCollective(PendingCollective&&) noexcept;
  PendingCollective& operator=(PendingCollective&&) noexcept;
  ~PendingCollective();

  bool test();  // non-blocking: true once complete (then the result is in place)
  // Until complete; a CPU collective that does not complete within parallel.timeout_s aborts the
  // job naming the operation, group, rank and step. Adds the time waited to the context.
  void wait();
  bool complete() const;

 private:
  friend class Communicator;
  struct State;
  std::unique_ptr<State> state_;
};

// Shared by every communicator of a process: the current step (for timeout messages), the
// timeout, and the payload bytes handed to each operation, keyed "group.operation"
// (e.g. "tp.all_reduce"): the bytes of the tensor given to the call on this rank.
struct CommContext {
  int world_rank = 0;
  double timeout_s = 300;
  int64_t step = 0;
  std::map<std::string, int64_t> bytes;
  double wait_seconds = 0;  // spent waiting for MPI operations to complete (CPU tensors)
  void reset_bytes() { bytes.clear(); }
  // Watches the NCCL collectives of every group (made with the first NCCL communicator).
  std::shared_ptr<CollectiveWatchdog> watchdog;
};

class Communicator {
 public:
  // `mpi_comm` is an MPI_Comm (passed as an integer handle to keep mpi.h out of headers).
  Communicator(std::string name, intptr_t mpi_comm, CommContext* context);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  intptr_t mpi_handle() const { return comm_; }
  CommContext& context() const { return *context_; }

  void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum) const;  // in place
  at::Tensor all_gather(const at::Tensor& tensor, int64_t dim) const;      // concatenated along dim
  at::Tensor reduce_scatter(const at::Tensor& tensor, int64_t dim) const;  // summed, this rank's part of dim
  void broadcast(at::Tensor& tensor, int root) const;
  void send(const at::Tensor& tensor, int peer) const;
  void recv(at::Tensor& tensor, int peer) const;
  // Posts a send and a receive together and waits for both (no deadlock between neighbours
  // that exchange at the same time). An undefined tensor or peer < 0 skips that half.
  void send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer) const;
  void barrier() const;

  // Non-blocking forms: the collective starts now and completes in PendingCollective::test() or
  // wait(). Collectives on one group must start in the same order on every rank, as the blocking
  // ones. `tensor` / `output` are written when it completes.
  PendingCollective start_all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum) const;
  // Sums `input` (1-D, the same length on every rank) over the group; rank r receives
  // counts[r] elements starting at counts[0] + ... + counts[r - 1] into `output` (1-D,
  // counts[rank] elements, contiguous). Counts may differ and be 0: a ZeRO-1 gradient bucket that
  // straddles the ranks' owned slices (MPI_Ireduce_scatter; NCCL: one reduce per rank).
  PendingCollective start_reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                         const std::vector<int64_t>& counts) const;
  // send_recv without waiting: the pipeline posts a receive before the computation that
  // precedes its use, and lets a send complete while it computes.
  PendingCollective start_send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer) const;

  // Creates this group's NCCL communicator (collective over the group; every rank creates its
  // groups' communicators in the same order), before any collective on CUDA tensors. Nothing
  // for a group of one rank.
  void init_nccl() const;
  // A sub-group of the ranks with the same `color`, ordered by `key` (MPI_Comm_split).
  std::unique_ptr<Communicator> split(const std::string& name, int color, int key) const;

 private:
  friend class PendingCollective;
  // Waits for MPI requests, aborting the job after the timeout.
  void wait(void* requests, int count, CommOp op) const;
  [[noreturn]] void abort_on_timeout(CommOp op) const;
  void count(CommOp op, const at::Tensor& t) const;

  NcclGroup& nccl() const;

  std::string name_;
  intptr_t comm_;
  mutable std::unique_ptr<NcclGroup> nccl_;
  CommContext* context_;
  int rank_ = 0, size_ = 1;
};

// Every rank's string, in rank order (collective over the group): two all-gathers, the lengths
// and then the bytes padded to the longest.
std::vector<std::string> all_gather_strings(const Communicator& group, const std::string& mine);

// MPI start-up and shut-down for the process (MPI_THREAD_SERIALIZED: a helper thread may call
// MPI, one at a time).
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  int world_rank() const { return rank_; }
  int world_size() const { return size_; }
  [[noreturn]] void abort(int code) const;

 private:
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};

}  // namespace exatrain
