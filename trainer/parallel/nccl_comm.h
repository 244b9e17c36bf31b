// NCCL for CUDA tensors: one NCCL communicator per process group, created collectively from a
// unique id that rank 0 broadcasts over the group's MPI communicator. Operations are enqueued
// on a dedicated stream that first waits for the caller's current stream (an event), and the
// current stream then waits for the collective, so ATen's ordering holds without a host sync.
// Completion is polled against the group's timeout; a stuck collective aborts the NCCL
// communicator and the job. Compiled when CUDA is present; exercised only on a GPU machine.
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

  void all_reduce(at::Tensor& tensor, ReduceOp op);
  at::Tensor all_gather(const at::Tensor& tensor, int64_t dim);
  at::Tensor reduce_scatter(const at::Tensor& tensor, int64_t dim);
  void broadcast(at::Tensor& tensor, int root);
  void send(const at::Tensor& tensor, int peer);
  void recv(at::Tensor& tensor, int peer);
  // Send and receive in one NCCL group (neighbours exchanging at once cannot deadlock).
  void send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer);
  // Queued after the caller's current stream, without making it wait (Communicator::start_*).
  std::shared_ptr<NcclWork> start_all_reduce(at::Tensor& tensor, ReduceOp op);
  std::shared_ptr<NcclWork> start_reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                                 const std::vector<int64_t>& counts);
  // An undefined tensor or peer < 0 skips that half.
  std::shared_ptr<NcclWork> start_send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Built with CUDA and a CUDA device present at run time.
bool nccl_usable();

}  // namespace exatrain
