#include "trainer/model/rope.h"

#include <ATen/ATen.h>

#include <cmath>

namespace exatrain {

at::Tensor rope_inverse_frequencies(const ModelConfig& c) {
  const int64_t dim = c.resolved_head_dim();
  // 1 / theta^(arange(0, dim, 2) / dim), all in float32 as in transformers.
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv_freq = 1.0 / at::pow(c.rope_theta, exponent);
  if (c.rope_scaling.type != RopeScaling::Llama3) return inv_freq;

  const auto& r = c.rope_scaling;
  const double old_context = static_cast<double>(r.original_max_position);
  const double low_freq_wavelen = old_context / r.low_freq_factor;
  const double high_freq_wavelen = old_context / r.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  // Long wavelengths are divided by `factor`, short ones kept, the band between interpolated.
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / r.factor, inv_freq);
  at::Tensor smooth = (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  at::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

RopeTables rope_tables(const at::Tensor& inv_freq, int64_t seq_len) {
  at::Tensor positions = at::arange(seq_len, inv_freq.options().dtype(at::kLong)).to(at::kFloat);
  at::Tensor freqs = positions.unsqueeze(1) * inv_freq.unsqueeze(0);  // [seq, head_dim/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                       // [seq, head_dim]
  return RopeTables{emb.cos(), emb.sin()};
}

RopeTables rope_tables(const at::Tensor& inv_freq, const at::Tensor& positions) {
  // The same float32 arithmetic as the table of 0 .. seq-1, so a document's rows are bit-equal to it.
  at::Tensor freqs = positions.to(inv_freq.device(), at::kLong).to(at::kFloat).unsqueeze(-1) * inv_freq;  // [b, seq, hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);                                           // [b, 1, seq, hd]
  return RopeTables{emb.cos(), emb.sin()};
}

at::Tensor document_positions(const at::Tensor& segments) {
  const int64_t T = segments.size(1);
  at::Tensor index = at::arange(T, segments.options().dtype(at::kLong)).expand({segments.size(0), T});
  at::Tensor starts = at::ones_like(segments, at::kBool);  // token t begins a document
  if (T > 1) starts.narrow(1, 1, T - 1).copy_(segments.narrow(1, 1, T - 1) != segments.narrow(1, 0, T - 1));
  // The latest document start at or before t, by a running maximum of the start indices.
  const at::Tensor first = std::get<0>(at::where(starts, index, at::zeros_like(index)).cummax(1));
  return index - first;
}

at::Tensor apply_rope(const at::Tensor& x, const RopeTables& t) { return ops::rope(x, t, ops::Impl::Reference); }

}  // namespace exatrain
