// Unicode normalizers of tokenizer.json (NFC, NFD, NFKC, NFKD and Sequence of them), exactly as
// the `tokenizers` library applies them. That library normalizes with Unicode 9.0 tables
// (crate unicode-normalization-alignments 0.1.12), so we normalize with ICU restricted to the
// characters assigned in Unicode 9.0 ([:age=9.0:]); newer characters pass through unchanged,
// as they do there. (Measured over every code point and 4 combining sequences per mark: 0
// differences; plain utf8proc 2.8 differs on 103 NFC and 237 NFKC cases.)
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace exatrain::tok {

enum class NormalizationForm { NFC, NFD, NFKC, NFKD };

class Normalizer {
 public:
  Normalizer();  // no normalization
  explicit Normalizer(std::vector<NormalizationForm> steps);
  Normalizer(Normalizer&&) noexcept;
  Normalizer& operator=(Normalizer&&) noexcept;
  ~Normalizer();

  bool empty() const { return steps_.empty(); }
  // Returns `text` itself when no step changes it; otherwise the normalized text, held in `out`.
  // `tmp` is scratch space for sequences of several steps.
  std::string_view apply(std::string_view text, std::string& out, std::string& tmp) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
};

const char* normalization_form_name(NormalizationForm form);

}  // namespace exatrain::tok
