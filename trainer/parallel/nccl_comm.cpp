#include "trainer/parallel/nccl_comm.h"

#include "trainer/core/error.h"
#include "trainer/parallel/comm.h"

#if defined(EXATRAIN_HAVE_CUDA)

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <thread>

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
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;

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
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~Impl() {
    if (comm) ncclCommDestroy(comm);
    if (stream) cudaStreamDestroy(stream);
    if (ready) cudaEventDestroy(ready);
    if (done) cudaEventDestroy(done);
  }

  // Orders the NCCL stream after the caller's current stream.
  void begin(const at::Tensor& t) {
    c10::cuda::CUDAGuard guard(t.device());
    check_cuda(cudaEventRecord(ready, c10::cuda::getCurrentCUDAStream().stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream, ready, 0), "cudaStreamWaitEvent");
  }
  // The caller's stream waits for the collective; the host polls it against the timeout.
  void end(const char* op) {
    check_cuda(cudaEventRecord(done, stream), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream().stream(), done, 0), "cudaStreamWaitEvent");
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) check_cuda(q, op);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) check_nccl(async, op);
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > group.context().timeout_s) {
        ncclCommAbort(comm);
        comm = nullptr;
        fail("rank {}: NCCL {} on group '{}' (rank {} of {}) did not complete within {} s at step {}",
             group.context().world_rank, op, group.name(), group.rank(), group.size(), group.context().timeout_s,
             group.context().step);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  // Queues `enqueue` (NCCL calls on `stream`) after the caller's current stream and records an
  // event after it; the caller's stream does not wait (nccl_work_wait does, later).
  template <class Fn>
  std::shared_ptr<NcclWork> start(const at::Tensor& t, Fn&& enqueue) {
    c10::cuda::CUDAGuard guard(t.device());
    begin(t);
    enqueue();
    auto work = std::make_shared<NcclWork>();
    work->device = t.device().index();
    check_cuda(cudaEventCreateWithFlags(&work->done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(work->done, stream), "cudaEventRecord");
    return work;
  }
};

NcclGroup::NcclGroup(const Communicator& group) : impl_(std::make_unique<Impl>(group)) {}
NcclGroup::~NcclGroup() = default;

void NcclGroup::all_reduce(at::Tensor& t, ReduceOp op) {
  at::Tensor buf = t.contiguous();
  impl_->begin(buf);
  check_nccl(ncclAllReduce(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), nccl_type(buf),
                           op == ReduceOp::Sum ? ncclSum : ncclMax, impl_->comm, impl_->stream), "all_reduce");
  impl_->end("all_reduce");
  if (!buf.is_same(t)) t.copy_(buf);
}

at::Tensor NcclGroup::all_gather(const at::Tensor& t, int64_t dim) {
  at::Tensor in = t.contiguous();
  std::vector<int64_t> shape{impl_->group.size()};
  for (int64_t d : in.sizes()) shape.push_back(d);
  at::Tensor out = at::empty(shape, in.options());
  impl_->begin(in);
  check_nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in), impl_->comm,
                           impl_->stream), "all_gather");
  impl_->end("all_gather");
  return at::cat(out.unbind(0), dim);
}

at::Tensor NcclGroup::reduce_scatter(const at::Tensor& t, int64_t dim) {
  const int n = impl_->group.size();
  at::Tensor in = at::stack(t.chunk(n, dim), 0).contiguous();
  at::Tensor out = at::empty(in.sizes().slice(1), in.options());
  impl_->begin(in);
  check_nccl(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(in), ncclSum,
                               impl_->comm, impl_->stream), "reduce_scatter");
  impl_->end("reduce_scatter");
  return out;
}

void NcclGroup::broadcast(at::Tensor& t, int root) {
  at::Tensor buf = t.contiguous();
  impl_->begin(buf);
  check_nccl(ncclBroadcast(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), nccl_type(buf), root,
                           impl_->comm, impl_->stream), "broadcast");
  impl_->end("broadcast");
  if (!buf.is_same(t)) t.copy_(buf);
}

void NcclGroup::send(const at::Tensor& t, int peer) {
  at::Tensor buf = t.contiguous();
  impl_->begin(buf);
  check_nccl(ncclSend(buf.data_ptr(), static_cast<size_t>(buf.numel()), nccl_type(buf), peer, impl_->comm,
                      impl_->stream), "send");
  impl_->end("send");
}

void NcclGroup::recv(at::Tensor& t, int peer) {
  EXATRAIN_CHECK(t.is_contiguous(), "recv needs a contiguous tensor");
  impl_->begin(t);
  check_nccl(ncclRecv(t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), peer, impl_->comm, impl_->stream),
             "recv");
  impl_->end("recv");
}

void NcclGroup::send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer) {
  const bool do_send = send.defined() && send_peer >= 0, do_recv = recv.defined() && recv_peer >= 0;
  at::Tensor buf = do_send ? send.contiguous() : at::Tensor();
  EXATRAIN_CHECK(!do_recv || recv.is_contiguous(), "recv needs a contiguous tensor");
  impl_->begin(do_send ? buf : recv);
  check_nccl(ncclGroupStart(), "group start");
  if (do_send)
    check_nccl(ncclSend(buf.data_ptr(), static_cast<size_t>(buf.numel()), nccl_type(buf), send_peer, impl_->comm,
                        impl_->stream), "send");
  if (do_recv)
    check_nccl(ncclRecv(recv.data_ptr(), static_cast<size_t>(recv.numel()), nccl_type(recv), recv_peer, impl_->comm,
                        impl_->stream), "recv");
  check_nccl(ncclGroupEnd(), "group end");
  impl_->end("send_recv");
}

std::shared_ptr<NcclWork> NcclGroup::start_all_reduce(at::Tensor& t, ReduceOp op) {
  EXATRAIN_CHECK(t.is_contiguous(), "NCCL all_reduce: a non-blocking all-reduce needs a contiguous tensor");
  return impl_->start(t, [&] {
    check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t),
                             op == ReduceOp::Sum ? ncclSum : ncclMax, impl_->comm, impl_->stream), "all_reduce");
  });
}

std::shared_ptr<NcclWork> NcclGroup::start_reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                                          const std::vector<int64_t>& counts) {
  // NCCL's reduce-scatter takes equal parts; uneven ones are one reduce per rank, rooted there,
  // in one NCCL group.
  return impl_->start(input, [&] {
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
  return impl_->start(do_send ? send : recv, [&] {
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
void NcclGroup::all_reduce(at::Tensor&, ReduceOp) {}
at::Tensor NcclGroup::all_gather(const at::Tensor& t, int64_t) { return t; }
at::Tensor NcclGroup::reduce_scatter(const at::Tensor& t, int64_t) { return t; }
void NcclGroup::broadcast(at::Tensor&, int) {}
void NcclGroup::send(const at::Tensor&, int) {}
void NcclGroup::recv(at::Tensor&, int) {}
void NcclGroup::send_recv(const at::Tensor&, int, at::Tensor&, int) {}
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
