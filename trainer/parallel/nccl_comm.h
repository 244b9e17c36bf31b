// NCCL for CUDA tensors: one NCCL communicator per process group, created collectively at
// start-up (Communicator::init_nccl) from a unique id that rank 0 broadcasts over the group's MPI
// communicator. Collectives are stream-ordered: each is queued on the group's NCCL stream after
// an event on the caller's current stream, and an event recorded after it makes the caller's
// stream wait (now for the blocking forms, at PendingCollective::wait for the start_* ones). The
// host never waits on a collective; the process's CollectiveWatchdog polls every event and, past
// parallel.timeout_s or on an NCCL error, aborts every communicator and ends the job naming the
// operation, group, rank and step. Reductions of bf16 tensors run in fp32 (Communicator), as on
// the MPI path. Compiled when CUDA is present; exercised only on a GPU machine.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace exatrain {

class Communicator;
enum class ReduceOp;

// A collective queued on a group's NCCL stream, with a CUDA event recorded after it.
struct NcclWork;
bool nccl_work_done(NcclWork& work);  // the device has finished it (no host wait)
void nccl_work_wait(NcclWork& work);  // the caller's current stream waits for it (no host wait)

class NcclGroup {
 public:
  explicit NcclGroup(const Communicator& group);  // collective over `group`
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  // The caller's current stream waits for these; the host does not.
  at::Tensor all_gather(const at::Tensor& tensor, int64_t dim);
  at::Tensor reduce_scatter(const at::Tensor& tensor, int64_t dim);
  void broadcast(at::Tensor& tensor, int root);
  // Queued after the caller's current stream, without making it wait (Communicator::start_*).
  std::shared_ptr<NcclWork> start_all_reduce(at::Tensor& tensor, ReduceOp op);
  std::shared_ptr<NcclWork> start_reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                                 const std::vector<int64_t>& counts);
  // Send and receive in one NCCL group (neighbours exchanging at once cannot deadlock); an
  // undefined tensor or peer < 0 skips that half.
  std::shared_ptr<NcclWork> start_send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Built with CUDA and a CUDA device present at run time.
bool nccl_usable();

}  // namespace exatrain
