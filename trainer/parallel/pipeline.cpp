#include "trainer/parallel/pipeline.h"

#include <ATen/ATen.h>

#include <deque>

#include "trainer/core/error.h"
#include "trainer/core/progress.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"

namespace exatrain {

namespace {

// The activation exchanged between stages for micro-batch `ids`: [b, T, H] or [b, T / tp, H].
std::vector<int64_t> activation_shape(const Exaone4Model& model, const at::Tensor& ids, bool sequence_parallel) {
  const int64_t split = sequence_parallel ? model.tp_size() : 1;
  return {ids.size(0), ids.size(1) / split, model.config().hidden_size};
}

at::Tensor segments_of(const MicroBatches& batches, size_t i) {
  return batches.segments.empty() ? at::Tensor() : batches.segments[i];
}

at::Tensor run_stage(const StageOptions& options, const std::function<at::Tensor()>& fn) {
  return options.run ? options.run(fn) : fn();
}

}  // namespace

PipelineStepResult run_1f1b(const Exaone4Model& model, const Communicator& pp, const MicroBatches& batches,
                            const StageOptions& options) {
  const int stages = pp.size(), stage = pp.rank();
  const int prev = stage > 0 ? stage - 1 : -1, next = stage + 1 < stages ? stage + 1 : -1;
  const auto& inputs = batches.inputs;
  const auto& targets = batches.targets;
  const bool weighted = !batches.weights.empty();
  const int M = static_cast<int>(inputs.size());
  const std::vector<int64_t> act_shape = activation_shape(model, inputs[0], options.sequence_parallel);
  // Hidden states travel in the model's activation dtype (fp32, or bf16 with bf16 weights).
  const at::TensorOptions act_options = at::TensorOptions().dtype(model.activation_dtype()).device(model.device());
  auto empty_act = [&] { return at::empty(act_shape, act_options); };

  struct InFlight {
    at::Tensor input, output;  // output: activation (mid) or scaled loss (last)
  };
  std::deque<InFlight> queue;
  PipelineStepResult result;
  int forwarded = 0, backwarded = 0;

  // One forward of micro-batch `forwarded` given its input (ids or the received activation).
  auto forward = [&](at::Tensor input) {
    if (!model.stage().first) input.requires_grad_(true);
    const int i = forwarded++;
    note_progress();  // a long accumulation without collectives is progress (trainer/train/watchdog.h)
    at::Tensor out = run_stage(options, [&] {
      return model.stage_forward(model.stage().first ? inputs[i] : input, options.recompute, options.sequence_parallel,
                                 segments_of(batches, static_cast<size_t>(i)));
    });
    if (model.stage().last) {
      at::Tensor loss = weighted ? model.loss_from_logits(out, targets[i], batches.weights[i])
                                 : model.loss_from_logits(out, targets[i]) / static_cast<double>(M);
      result.loss += loss.item<double>();
      out = loss;
    }
    queue.push_back(InFlight{input, out});
    result.max_in_flight = std::max(result.max_in_flight, static_cast<int>(queue.size()));
    return out;
  };
  // Backward of the oldest micro-batch given the gradient of its output; returns its input's.
  auto backward = [&](const at::Tensor& grad_out) {
    InFlight f = std::move(queue.front());
    queue.pop_front();
    note_progress();
    if (++backwarded == M && options.before_last_backward) options.before_last_backward();
    if (!f.output.requires_grad())  // a first stage with every parameter frozen: nothing to do
      return at::Tensor();
    if (model.stage().last)
      f.output.backward();
    else
      f.output.backward(grad_out);
    return model.stage().first ? at::Tensor() : f.input.grad();
  };
  // Transfers are non-blocking: a send completes while the stage computes (its buffer is kept
  // until then; the oldest is waited for when more than two are on their way, which bounds the
  // memory they hold), and in the steady phase the next input's receive is posted before the
  // backward, so it arrives meanwhile. Each wait happens no earlier than the blocking schedule's,
  // so the schedule's freedom from deadlock carries over.
  at::Tensor none;
  std::deque<PendingCollective> sends;
  auto send = [&](const at::Tensor& t, int peer) {  // also drops completed sends (peer < 0: only that)
    if (peer >= 0) sends.push_back(pp.start_send_recv(t, peer, none, -1));
    while (!sends.empty() && (sends.size() > 2 || sends.front().test())) {
      sends.front().wait();
      sends.pop_front();
    }
  };
  auto post_recv_forward = [&](at::Tensor& x) {
    x = model.stage().first ? at::Tensor() : empty_act();
    return pp.start_send_recv(none, -1, x, prev);
  };
  auto recv_forward = [&] {
    at::Tensor x;
    post_recv_forward(x).wait();
    return x;
  };

  const int warmup = std::min(stages - stage - 1, M), steady = M - warmup;
  for (int i = 0; i < warmup; ++i) {
    at::Tensor y = forward(recv_forward());
    send(y.detach(), next);
  }
  at::Tensor x = steady > 0 ? recv_forward() : at::Tensor();
  for (int i = 0; i < steady; ++i) {
    at::Tensor y = forward(x);
    at::Tensor grad_y = model.stage().last ? at::Tensor() : empty_act();
    // Send forward and receive backward in one exchange (neighbours exchanging at once).
    pp.start_send_recv(model.stage().last ? at::Tensor() : y.detach(), next, grad_y, next).wait();
    PendingCollective next_input;
    if (i + 1 < steady) next_input = post_recv_forward(x);
    send(backward(grad_y), prev);
    next_input.wait();
  }
  for (int i = 0; i < warmup; ++i) {
    at::Tensor grad_y = empty_act();
    pp.start_send_recv(none, -1, grad_y, next).wait();
    send(backward(grad_y), prev);
  }
  for (auto& pending : sends) pending.wait();
  EXATRAIN_CHECK(queue.empty() && forwarded == M, "internal: 1F1B left {} micro-batches in flight", queue.size());
  return result;
}

std::vector<double> pipeline_forward_loss(const Exaone4Model& model, const Communicator& pp,
                                          const MicroBatches& batches, const StageOptions& options) {
  at::NoGradGuard no_grad;
  const int stage = pp.rank();
  std::vector<double> losses;
  at::Tensor none;
  for (size_t i = 0; i < batches.inputs.size(); ++i) {
    const at::Tensor& ids = batches.inputs[i];
    at::Tensor h = model.stage().first
                       ? ids
                       : at::empty(activation_shape(model, ids, options.sequence_parallel),
                                   at::TensorOptions().dtype(model.activation_dtype()).device(model.device()));
    if (!model.stage().first) pp.send_recv(none, -1, h, stage - 1);
    at::Tensor out = run_stage(options, [&] {
      return model.stage_forward(h, false, options.sequence_parallel, segments_of(batches, i));
    });
    if (model.stage().last) {
      losses.push_back(model.loss_from_logits(out, batches.targets[i], batches.weights[i]).item<double>());
    } else {
      pp.send_recv(out.to(model.activation_dtype()).contiguous(), stage + 1, none, -1);
      losses.push_back(0.0);
    }
  }
  return losses;
}

at::Tensor pipeline_last_logits(const Exaone4Model& model, const Communicator& pp, const at::Tensor& ids) {
  at::NoGradGuard no_grad;
  const int stage = pp.rank(), stages = pp.size();
  at::Tensor h = model.stage().first ? ids
                                     : at::empty({ids.size(0), ids.size(1), model.config().hidden_size},
                                                 at::TensorOptions().dtype(model.activation_dtype()).device(model.device()));
  at::Tensor none;
  if (!model.stage().first) pp.send_recv(none, -1, h, stage - 1);
  at::Tensor logits = at::empty({model.config().vocab_size});  // on the CPU: broadcast through MPI
  if (model.stage().last) {
    at::Tensor local = model.stage_forward(h);
    logits = (model.tp_size() == 1 ? local : model.groups().tp->all_gather(local, -1))
                 .select(1, ids.size(1) - 1).squeeze(0).to(at::kFloat).to(at::kCPU).contiguous();
  } else {
    pp.send_recv(model.stage_forward(h), stage + 1, none, -1);
  }
  pp.broadcast(logits, stages - 1);
  return logits;
}

}  // namespace exatrain
