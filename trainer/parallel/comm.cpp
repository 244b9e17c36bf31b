#include "trainer/parallel/comm.h"

#include <mpi.h>
#include <ATen/ATen.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "trainer/core/error.h"
#include "trainer/core/progress.h"
#include "trainer/parallel/nccl_comm.h"

namespace exatrain {

const char* comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::AllReduce: return "all_reduce";
    case CommOp::AllGather: return "all_gather";
    case CommOp::ReduceScatter: return "reduce_scatter";
    case CommOp::Broadcast: return "broadcast";
    case CommOp::SendRecv: return "send_recv";
    case CommOp::Count: break;
  }
  return "?";
}

namespace {

MPI_Comm as_comm(intptr_t handle) { return reinterpret_cast<MPI_Comm>(handle); }

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    // Moved, never reduced: every reduction widens bf16 to fp32 first (all_reduce, reduce_scatter).
    case at::kBFloat16: return MPI_UINT16_T;
    default: fail("collectives take fp32, fp64, int32, int64 or uint8 CPU tensors (and bf16 ones to gather); got {}",
                  c10::toString(t.scalar_type()));
  }
}

// MPI counts are `int`: a 32B ZeRO-1 bucket on 8 ranks holds more than 2^31 elements. Every
// MPI call below moves at most this many elements (or bytes) at a time; larger tensors go in
// consecutive chunks. EXATRAIN_MPI_MAX_COUNT lowers it so tests reach the chunked path with
// small tensors.
int64_t max_mpi_count() {
  static const int64_t limit = [] {
    const char* env = std::getenv("EXATRAIN_MPI_MAX_COUNT");
    const int64_t v = env ? std::atoll(env) : 0;
    return v > 0 && v < INT_MAX ? v : int64_t{INT_MAX};
  }();
  return limit;
}

// [begin, begin + length) chunks of [0, n), each at most max_mpi_count() long.
template <class Fn>
void for_each_chunk(int64_t n, Fn&& fn) {
  const int64_t step = max_mpi_count();
  for (int64_t begin = 0; begin < n; begin += step) fn(begin, static_cast<int>(std::min(step, n - begin)));
  if (n == 0) fn(0, 0);
}

void check_cpu(const at::Tensor& t, const char* op) {
  EXATRAIN_CHECK(t.device().is_cpu(), "{}: the MPI backend takes CPU tensors (CUDA tensors use NCCL)", op);
}

}  // namespace

Communicator::Communicator(std::string name, intptr_t mpi_comm, CommContext* context)
    : name_(std::move(name)), comm_(mpi_comm), context_(context) {
  MPI_Comm_rank(as_comm(comm_), &rank_);
  MPI_Comm_size(as_comm(comm_), &size_);
}

void Communicator::init_nccl() const {
  if (size_ > 1 && !nccl_) nccl_ = std::make_unique<NcclGroup>(*this);
}

NcclGroup& Communicator::nccl() const {
  // Not created here: inside the first collective, ranks that reach it at different times would
  // each wait for the others in ncclCommInitRank, outside any timeout.
  EXATRAIN_CHECK(nccl_, "rank {}: a collective on CUDA tensors over group '{}' before its NCCL communicator was "
                 "created (Communicator::init_nccl at start-up)", context_->world_rank, name_);
  return *nccl_;
}

Communicator::~Communicator() {
  nccl_.reset();
  MPI_Comm c = as_comm(comm_);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && c != MPI_COMM_WORLD && c != MPI_COMM_NULL) MPI_Comm_free(&c);
}

void Communicator::count(CommOp op, const at::Tensor& t) const {
  context_->bytes[name_ + "." + comm_op_name(op)] += static_cast<int64_t>(t.nbytes());
}

void Communicator::wait(void* requests, int n, CommOp op) const {
  auto* reqs = static_cast<MPI_Request*>(requests);
  const auto start = std::chrono::steady_clock::now();
  int done = 0;
  for (int spins = 0;; ++spins) {
    MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done) {
      context_->wait_seconds += waited;
      return;
    }
    note_progress();  // waiting for a peer is not being stuck (trainer/train/watchdog.h)
    if (waited > context_->timeout_s) abort_on_timeout(op);
    if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void Communicator::abort_on_timeout(CommOp op) const {
  std::fprintf(stderr,
               "exatrain: error: rank %d: %s on group '%s' (rank %d of %d) did not complete within %.0f s at "
               "step %lld; another rank has stopped or is stuck; aborting the job (parallel.timeout_s)\n",
               context_->world_rank, comm_op_name(op), name_.c_str(), rank_, size_, context_->timeout_s,
               static_cast<long long>(context_->step));
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();  // MPI_Abort does not return
}

// --- non-blocking collectives ---

struct PendingCollective::State {
  const Communicator* group = nullptr;
  CommOp op = CommOp::AllReduce;
  std::vector<MPI_Request> requests;    // CPU: MPI
  std::shared_ptr<NcclWork> nccl;       // CUDA: queued on the NCCL stream
  std::vector<at::Tensor> buffers;      // alive until complete
  std::function<void()> on_complete;    // e.g. copy an fp32 staging buffer back into a bf16 tensor
  bool complete = false;

  void finish() {
    complete = true;
    if (on_complete) on_complete();
    on_complete = nullptr;
    buffers.clear();
  }
};

PendingCollective::PendingCollective() : state_(std::make_unique<State>()) { state_->complete = true; }
PendingCollective::PendingCollective(PendingCollective&&) noexcept = default;
PendingCollective& PendingCollective::operator=(PendingCollective&& other) noexcept {
  if (this != &other) {
    if (state_ && !state_->complete) (void)state_.release();  // as in the destructor
    state_ = std::move(other.state_);
  }
  return *this;
}

PendingCollective::~PendingCollective() {
  if (state_ && !state_->complete) (void)state_.release();  // see the header: MPI/NCCL may still write
}

bool PendingCollective::complete() const { return !state_ || state_->complete; }

bool PendingCollective::test() {
  if (complete()) return true;
  State& s = *state_;
  int done = 1;
  if (!s.requests.empty()) MPI_Testall(static_cast<int>(s.requests.size()), s.requests.data(), &done, MPI_STATUSES_IGNORE);
  if (done && s.nccl) done = nccl_work_done(*s.nccl) ? 1 : 0;
  if (done) s.finish();
  return done != 0;
}

void PendingCollective::wait() {
  if (complete()) return;
  State& s = *state_;
  if (!s.requests.empty()) s.group->wait(s.requests.data(), static_cast<int>(s.requests.size()), s.op);
  if (s.nccl) nccl_work_wait(*s.nccl);
  s.finish();
}

PendingCollective Communicator::start_all_reduce(at::Tensor& tensor, ReduceOp op) const {
  PendingCollective p;
  if (size_ == 1) return p;
  PendingCollective::State& s = *p.state_;
  s.group = this;
  s.op = CommOp::AllReduce;
  s.complete = false;
  count(CommOp::AllReduce, tensor);
  const bool bf16 = tensor.scalar_type() == at::kBFloat16;  // reduced in fp32 on both backends
  at::Tensor buf = bf16 ? tensor.to(at::kFloat) : tensor.contiguous();
  s.buffers.push_back(buf);
  if (!buf.is_same(tensor)) s.on_complete = [buf, target = tensor]() mutable { target.copy_(buf); };
  if (tensor.is_cuda()) {
    s.nccl = nccl().start_all_reduce(buf, op);
    return p;
  }
  check_cpu(tensor, "all_reduce");
  auto* base = static_cast<char*>(buf.data_ptr());
  for_each_chunk(buf.numel(), [&](int64_t begin, int length) {
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, base + begin * buf.element_size(), length, mpi_type(buf),
                   op == ReduceOp::Sum ? MPI_SUM : MPI_MAX, as_comm(comm_), &req);
    s.requests.push_back(req);
  });
  return p;
}

PendingCollective Communicator::start_reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                                     const std::vector<int64_t>& counts) const {
  EXATRAIN_CHECK(static_cast<int>(counts.size()) == size_, "reduce_scatter on group '{}': {} counts for {} ranks", name_,
                 counts.size(), size_);
  int64_t total = 0, mine = 0;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) mine = total;
    total += counts[static_cast<size_t>(r)];
  }
  EXATRAIN_CHECK(input.dim() == 1 && input.numel() == total && input.is_contiguous(),
                 "reduce_scatter on group '{}': input of {} elements, but the counts add up to {}", name_,
                 input.numel(), total);
  EXATRAIN_CHECK(output.dim() == 1 && output.numel() == counts[static_cast<size_t>(rank_)] && output.is_contiguous() &&
                     output.scalar_type() == input.scalar_type() && input.scalar_type() != at::kBFloat16,
                 "reduce_scatter on group '{}': the output must be contiguous, of this rank's count and the input's "
                 "dtype (fp32 or fp64)", name_);
  PendingCollective p;
  if (size_ == 1) {
    output.copy_(input);
    return p;
  }
  PendingCollective::State& s = *p.state_;
  s.group = this;
  s.op = CommOp::ReduceScatter;
  s.complete = false;
  count(CommOp::ReduceScatter, input);
  s.buffers = {input, output};
  if (input.is_cuda()) {
    s.nccl = nccl().start_reduce_scatter(input, output, counts);
    return p;
  }
  check_cpu(input, "reduce_scatter");
  // MPI counts are `int`: split the input into column ranges of at most max_mpi_count()
  // elements; in each, rank r receives its part's intersection with the range.
  const int64_t elem = input.element_size();
  std::vector<int> range_counts(static_cast<size_t>(size_));
  for_each_chunk(total, [&](int64_t begin, int length) {
    int64_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      const int64_t lo = std::max(begin, offset), hi = std::min(begin + length, offset + counts[static_cast<size_t>(r)]);
      range_counts[static_cast<size_t>(r)] = static_cast<int>(std::max<int64_t>(hi - lo, 0));
      offset += counts[static_cast<size_t>(r)];
    }
    const int64_t into = std::clamp<int64_t>(begin - mine, 0, output.numel());  // where this range's part lands
    MPI_Request req;
    MPI_Ireduce_scatter(static_cast<char*>(input.data_ptr()) + begin * elem,
                        static_cast<char*>(output.data_ptr()) + into * elem, range_counts.data(), mpi_type(input),
                        MPI_SUM, as_comm(comm_), &req);
    s.requests.push_back(req);
  });
  return p;
}

void Communicator::all_reduce(at::Tensor& tensor, ReduceOp op) const {
  start_all_reduce(tensor, op).wait();  // CUDA: the caller's stream waits, not the host
}

at::Tensor Communicator::all_gather(const at::Tensor& tensor, int64_t dim) const {
  if (size_ == 1) return tensor;
  if (tensor.is_cuda()) {
    count(CommOp::AllGather, tensor);
    return nccl().all_gather(tensor, dim);
  }
  check_cpu(tensor, "all_gather");
  at::Tensor in = tensor.contiguous();  // bf16 travels as 16-bit words: a gather adds nothing up
  std::vector<int64_t> shape{size_};
  for (int64_t d : in.sizes()) shape.push_back(d);
  at::Tensor out = at::empty(shape, in.options());  // [size, ...]
  count(CommOp::AllGather, tensor);
  const int64_t n = in.numel();
  if (n <= max_mpi_count()) {
    MPI_Request req;
    MPI_Iallgather(in.data_ptr(), static_cast<int>(n), mpi_type(in), out.data_ptr(), static_cast<int>(n), mpi_type(in),
                   as_comm(comm_), &req);
    wait(&req, 1, CommOp::AllGather);
  } else {  // chunk c of every rank's part gathers into [size, chunk], then into place
    at::Tensor flat_in = in.view({-1}), flat_out = out.view({size_, n});
    for_each_chunk(n, [&](int64_t begin, int length) {
      at::Tensor part = at::empty({size_, length}, in.options());
      MPI_Request req;
      MPI_Iallgather(flat_in.narrow(0, begin, length).data_ptr(), length, mpi_type(in), part.data_ptr(), length,
                     mpi_type(in), as_comm(comm_), &req);
      wait(&req, 1, CommOp::AllGather);
      flat_out.narrow(1, begin, length).copy_(part);
    });
  }
  std::vector<at::Tensor> parts = out.unbind(0);
  return at::cat(parts, dim).to(tensor.scalar_type());
}

at::Tensor Communicator::reduce_scatter(const at::Tensor& tensor, int64_t dim) const {
  if (size_ == 1) return tensor;
  if (tensor.is_cuda()) {
    count(CommOp::ReduceScatter, tensor);
    if (tensor.scalar_type() != at::kBFloat16) return nccl().reduce_scatter(tensor, dim);
    return nccl().reduce_scatter(tensor.to(at::kFloat), dim).to(at::kBFloat16);  // summed in fp32, as over MPI
  }
  check_cpu(tensor, "reduce_scatter");
  EXATRAIN_CHECK(tensor.size(dim) % size_ == 0, "reduce_scatter on group '{}': dimension {} of size {} is not divisible by {}",
                 name_, dim, tensor.size(dim), size_);
  // Lay the chunks out contiguously rank by rank, then one MPI_Ireduce_scatter_block.
  at::Tensor in = at::stack(tensor.chunk(size_, dim), 0).to(tensor.scalar_type() == at::kBFloat16 ? at::kFloat : tensor.scalar_type()).contiguous();
  at::Tensor out = at::empty(in.sizes().slice(1), in.options());
  count(CommOp::ReduceScatter, tensor);
  const int64_t n = out.numel();
  at::Tensor rows = in.view({size_, n}), flat_out = out.view({-1});
  for_each_chunk(n, [&](int64_t begin, int length) {  // columns [begin, begin + length) of every rank's block
    at::Tensor part = n <= max_mpi_count() ? rows : rows.narrow(1, begin, length).contiguous();
    MPI_Request req;
    MPI_Ireduce_scatter_block(part.data_ptr(), flat_out.narrow(0, begin, length).data_ptr(), length, mpi_type(in),
                              MPI_SUM, as_comm(comm_), &req);
    wait(&req, 1, CommOp::ReduceScatter);
  });
  return out.to(tensor.scalar_type());
}

void Communicator::broadcast(at::Tensor& tensor, int root) const {
  if (size_ == 1) return;
  if (tensor.is_cuda()) {
    count(CommOp::Broadcast, tensor);
    return nccl().broadcast(tensor, root);
  }
  check_cpu(tensor, "broadcast");
  at::Tensor buf = tensor.contiguous();
  count(CommOp::Broadcast, tensor);
  auto* bytes = static_cast<char*>(buf.data_ptr());
  for_each_chunk(static_cast<int64_t>(buf.nbytes()), [&](int64_t begin, int length) {
    MPI_Request req;
    MPI_Ibcast(bytes + begin, length, MPI_BYTE, root, as_comm(comm_), &req);
    wait(&req, 1, CommOp::Broadcast);
  });
  if (!buf.is_same(tensor)) tensor.copy_(buf);
}

void Communicator::send(const at::Tensor& tensor, int peer) const {
  if (tensor.is_cuda()) {
    at::Tensor none;
    return start_send_recv(tensor, peer, none, -1).wait();
  }
  check_cpu(tensor, "send");
  at::Tensor buf = tensor.contiguous();
  count(CommOp::SendRecv, tensor);
  auto* bytes = static_cast<char*>(buf.data_ptr());
  for_each_chunk(static_cast<int64_t>(buf.nbytes()), [&](int64_t begin, int length) {
    MPI_Request req;
    MPI_Isend(bytes + begin, length, MPI_BYTE, peer, 0, as_comm(comm_), &req);
    wait(&req, 1, CommOp::SendRecv);
  });
}

void Communicator::recv(at::Tensor& tensor, int peer) const {
  if (tensor.is_cuda()) return start_send_recv(at::Tensor(), -1, tensor, peer).wait();
  check_cpu(tensor, "recv");
  EXATRAIN_CHECK(tensor.is_contiguous(), "recv needs a contiguous tensor");
  auto* bytes = static_cast<char*>(tensor.data_ptr());
  for_each_chunk(static_cast<int64_t>(tensor.nbytes()), [&](int64_t begin, int length) {
    MPI_Request req;
    MPI_Irecv(bytes + begin, length, MPI_BYTE, peer, 0, as_comm(comm_), &req);
    wait(&req, 1, CommOp::SendRecv);
  });
}

void Communicator::send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv, int recv_peer) const {
  start_send_recv(send, send_peer, recv, recv_peer).wait();
}

PendingCollective Communicator::start_send_recv(const at::Tensor& send, int send_peer, at::Tensor& recv,
                                                int recv_peer) const {
  const bool sending = send.defined() && send_peer >= 0, receiving = recv.defined() && recv_peer >= 0;
  PendingCollective p;
  if (!sending && !receiving) return p;
  PendingCollective::State& s = *p.state_;
  s.group = this;
  s.op = CommOp::SendRecv;
  s.complete = false;
  EXATRAIN_CHECK(!receiving || recv.is_contiguous(), "recv needs a contiguous tensor");
  at::Tensor buf = sending ? send.contiguous() : at::Tensor();
  if (sending) count(CommOp::SendRecv, send);
  if ((sending && send.is_cuda()) || (receiving && recv.is_cuda())) {
    s.nccl = nccl().start_send_recv(buf, sending ? send_peer : -1, recv, receiving ? recv_peer : -1);
    s.buffers = {buf, receiving ? recv : at::Tensor()};
    return p;
  }
  if (sending) check_cpu(send, "send");
  if (receiving) check_cpu(recv, "recv");
  // Each half in chunks of at most max_mpi_count() bytes (the peer chunks its half the same
  // way), all posted at once: MPI matches messages between two ranks on one tag in order.
  auto post = [&](bool out, const at::Tensor& t, int peer) {
    auto* bytes = static_cast<char*>(t.data_ptr());
    for_each_chunk(static_cast<int64_t>(t.nbytes()), [&](int64_t begin, int length) {
      MPI_Request req;
      if (out)
        MPI_Isend(bytes + begin, length, MPI_BYTE, peer, 0, as_comm(comm_), &req);
      else
        MPI_Irecv(bytes + begin, length, MPI_BYTE, peer, 0, as_comm(comm_), &req);
      s.requests.push_back(req);
    });
  };
  if (sending) post(true, buf, send_peer);
  if (receiving) post(false, recv, recv_peer);
  s.buffers = {buf, receiving ? recv : at::Tensor()};
  return p;
}

void Communicator::barrier() const {
  if (size_ == 1) return;
  MPI_Request req;
  MPI_Ibarrier(as_comm(comm_), &req);
  wait(&req, 1, CommOp::AllReduce);
}

std::unique_ptr<Communicator> Communicator::split(const std::string& name, int color, int key) const {
  MPI_Comm sub;
  MPI_Comm_split(as_comm(comm_), color, key, &sub);
  return std::make_unique<Communicator>(name, reinterpret_cast<intptr_t>(sub), context_);
}

std::vector<std::string> all_gather_strings(const Communicator& group, const std::string& mine) {
  at::Tensor length = at::tensor({static_cast<int64_t>(mine.size())}, at::kLong);
  at::Tensor lengths = group.all_gather(length, 0);
  const int64_t width = std::max<int64_t>(lengths.max().item<int64_t>(), 1);
  at::Tensor buf = at::zeros({width}, at::kByte);
  std::memcpy(buf.data_ptr(), mine.data(), mine.size());
  at::Tensor all = group.all_gather(buf, 0);
  std::vector<std::string> out;
  const auto* p = static_cast<const char*>(all.data_ptr());
  for (int r = 0; r < group.size(); ++r)
    out.emplace_back(p + r * width, static_cast<size_t>(lengths[r].item<int64_t>()));
  return out;
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    owns_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

void MpiRuntime::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

}  // namespace exatrain
