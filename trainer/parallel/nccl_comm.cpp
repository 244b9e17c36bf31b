#include "trainer/parallel/nccl_comm.h"

#include "trainer/core/error.h"
#include "trainer/parallel/comm.h"

#if defined(EXATRAIN_HAVE_CUDA)

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "trainer/parallel/collective_watchdog.h"

namespace exatrain {

namespace {

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail("NCCL {}: {}", what, ncclGetErrorString(r));
}
void check_cuda(cudaError_t r, const char* what) {
  if (r != cudaSuccess) fail("CUDA {}: {}", what, cudaGetErrorString(r));
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: fail("NCCL: unsupported dtype {}", c10::toString(t.scalar_type()));
  }
}

}  // namespace

struct NcclWork {
  cudaEvent_t done = nullptr;
  c10::DeviceIndex device = 0;
  ~NcclWork() {
    if (done) cudaEventDestroy(done);
  }
};

bool nccl_work_done(NcclWork& work) {
  const cudaError_t q = cudaEventQuery(work.done);
  if (q != cudaErrorNotReady) check_cuda(q, "cudaEventQuery");
  return q == cudaSuccess;
}

void nccl_work_wait(NcclWork& work) {
  check_cuda(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(work.device).stream(), work.done, 0),
             "cudaStreamWaitEvent");
}

struct NcclGroup::Impl {
  const Communicator& group;
  std::shared_ptr<CollectiveWatchdog> watchdog;
  int abort_hook = -1;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;

  explicit Impl(const Communicator& g) : group(g) {
    ncclUniqueId id;
    if (group.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    at::Tensor bytes = at::empty({static_cast<int64_t>(sizeof id)}, at::kByte);
    std::memcpy(bytes.data_ptr(), &id, sizeof id);
    group.broadcast(bytes, 0);  // over MPI
    std::memcpy(&id, bytes.data_ptr(), sizeof id);
    check_nccl(ncclCommInitRank(&comm, group.size(), id, group.rank()), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    // One watchdog per process, shared by its groups (the context is the process's).
    CommContext& context = group.context();
    if (!context.watchdog) context.watchdog = std::make_shared<CollectiveWatchdog>();
    watchdog = context.watchdog;
    abort_hook = watchdog->add_abort_hook([c = comm] { ncclCommAbort(c); });
  }
  ~Impl() {
    watchdog->remove_abort_hook(abort_hook);
    // Everything queued is complete before the communicator goes, so the watchdog's polls of
    // this group's events (which it still holds) see them complete and never touch `comm`.
    if (stream) cudaStreamSynchronize(stream);
    if (comm) ncclCommDestroy(comm);
    if (stream) cudaStreamDestroy(stream);
    if (ready) cudaEventDestroy(ready);
  }

  // Queues `enqueue` (NCCL calls on `stream`) after the caller's current stream, records an
  // event after it and hands it to the watchdog. Nothing waits here: the caller's stream waits
  // on the event (nccl_work_wait), now for the blocking forms or later for the start_* ones.
  template <class Fn>
  std::shared_ptr<NcclWork> start(const at::Tensor& t, const char* op, Fn&& enqueue) {
    c10::cuda::CUDAGuard guard(t.device());
    check_cuda(cudaEventRecord(ready, c10::cuda::getCurrentCUDAStream().stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream, ready, 0), "cudaStreamWaitEvent");
    enqueue();
    auto work = std::make_shared<NcclWork>();
    work->device = t.device().index();
    check_cuda(cudaEventCreateWithFlags(&work->done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(work->done, stream), "cudaEventRecord");
    CollectiveWatchdog::Operation watched;
    watched.op = op;
    watched.group = group.name();
    watched.world_rank = group.context().world_rank;
    watched.group_rank = group.rank();
    watched.group_size = group.size();
    watched.step = group.context().step;
    watched.timeout_s = group.context().timeout_s;
    watched.poll = [work, c = comm](std::string& error) {
      const cudaError_t q = cudaEventQuery(work->done);
      if (q == cudaSuccess) return true;
      if (q != cudaErrorNotReady) {
        error = cudaGetErrorString(q);
        return false;
      }
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(c, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
        error = ncclGetErrorString(async);
      return false;
    };
    watchdog->watch(std::move(watched));
    return work;
  }
  // The blocking forms: the caller's stream waits for the collective; the host does not.
  template <class Fn>
  void run(const at::Tensor& t, const char* op, Fn&& enqueue) {
    nccl_work_wait(*start(t, op, std::forward<Fn>(enqueue)));
  }
};

NcclGroup::NcclGroup(const Communicator& group) : impl_(std::make_unique<Impl>(group)) {}
NcclGroup::~NcclGroup() = default;

at::Tensor NcclGroup::all_gather(const at::Tensor& t, int64_t dim) {
  at::Tensor in = t.contiguous();
  std::vector<int64_t> shape{impl_->group.size()};
  for (int64_t d : in.sizes()) shape.push_back(d);
  at::Tensor out = at::empty(shape, in.options());
  impl_->run(in, "all_gather", [&] {
    check_nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in),
                             impl_->comm, impl_->stream), "all_gather");
  });
  return at::cat(out.unbind(0), dim);
}

at::Tensor NcclGroup::reduce_scatter(const at::Tensor& t, int64_t dim) {
  const int n = impl_->group.size();
  at::Tensor in = at::stack(t.chunk(n, dim), 0).contiguous();
  at::Tensor out = at::empty(in.sizes().slice(1), in.options());
  impl_->run(in, "reduce_scatter", [&] {
    check_nccl(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(in),
                                 ncclSum, impl_->comm, impl_->stream), "reduce_scatter");
  });
  return out;
}

void NcclGroup::broadcast(at::Tensor& t, int root) {
  at::Tensor buf = t.contiguous();
  impl_->run(buf, "broadcast", [&] {
    check_nccl(ncclBroadcast(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), nccl_type(buf), root,
                             impl_->comm, impl_->stream), "broadcast");
  });
  if (!buf.is_same(t)) t.copy_(buf);
}

std::shared_ptr<NcclWork> NcclGroup::start_all_reduce(at::Tensor& t, ReduceOp op) {
  EXATRAIN_CHECK(t.is_contiguous(), "NCCL all_reduce: a non-blocking all-reduce needs a contiguous tensor");
  return impl_->start(t, "all_reduce", [&] {
    check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t),
                             op == ReduceOp::Sum ? ncclSum : ncclMax, impl_->comm, impl_->stream), "all_reduce");
  });
}

std::shared_ptr<NcclWork> NcclGroup::start_reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                                          const std::vector<int64_t>& counts) {
  // NCCL's reduce-scatter takes equal parts; uneven ones are one reduce per rank, rooted there,
  // in one NCCL group.
  return impl_->start(input, "reduce_scatter", [&] {
    check_nccl(ncclGroupStart(), "group start");
    int64_t offset = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      if (counts[r] > 0) {
        const bool me = static_cast<int>(r) == impl_->group.rank();
        check_nccl(ncclReduce(static_cast<const char*>(input.data_ptr()) + offset * input.element_size(),
                              me ? output.data_ptr() : nullptr, static_cast<size_t>(counts[r]), nccl_type(input),
                              ncclSum, static_cast<int>(r), impl_->comm, impl_->stream), "reduce_scatter");
      }
      offset += counts[r];
    }
    check_nccl(ncclGroupEnd(), "group end");
  });
}

std::shared_ptr<NcclWork> NcclGroup::start_send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv,
                                                     int recv_peer) {
  const bool do_send = send.defined() && send_peer >= 0, do_recv = recv.defined() && recv_peer >= 0;
  EXATRAIN_CHECK(!do_send || send.is_contiguous(), "NCCL send: a non-blocking send needs a contiguous tensor");
  EXATRAIN_CHECK(!do_recv || recv.is_contiguous(), "recv needs a contiguous tensor");
  return impl_->start(do_send ? send : recv, "send_recv", [&] {
    check_nccl(ncclGroupStart(), "group start");
    if (do_send)
      check_nccl(ncclSend(send.data_ptr(), static_cast<size_t>(send.numel()), nccl_type(send), send_peer, impl_->comm,
                          impl_->stream), "send");
    if (do_recv)
      check_nccl(ncclRecv(recv.data_ptr(), static_cast<size_t>(recv.numel()), nccl_type(recv), recv_peer, impl_->comm,
                          impl_->stream), "recv");
    check_nccl(ncclGroupEnd(), "group end");
  });
}

bool nccl_usable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace exatrain

#else  // built without CUDA

namespace exatrain {
struct NcclGroup::Impl {};
NcclGroup::NcclGroup(const Communicator&) { fail("CUDA tensors need exatrain built with CUDA (nvcc and NCCL)"); }
NcclGroup::~NcclGroup() = default;
at::Tensor NcclGroup::all_gather(const at::Tensor& t, int64_t) { return t; }
at::Tensor NcclGroup::reduce_scatter(const at::Tensor& t, int64_t) { return t; }
void NcclGroup::broadcast(at::Tensor&, int) {}
std::shared_ptr<NcclWork> NcclGroup::start_all_reduce(at::Tensor&, ReduceOp) { return nullptr; }
std::shared_ptr<NcclWork> NcclGroup::start_reduce_scatter(const at::Tensor&, at::Tensor&, const std::vector<int64_t>&) {
  return nullptr;
}
std::shared_ptr<NcclWork> NcclGroup::start_send_recv(const at::Tensor&, int, at::Tensor&, int) { return nullptr; }
struct NcclWork {};
bool nccl_work_done(NcclWork&) { return true; }
void nccl_work_wait(NcclWork&) {}
bool nccl_usable() { return false; }
}  // namespace exatrain

#endif
