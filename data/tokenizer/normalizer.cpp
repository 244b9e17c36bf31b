#include "data/tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uniset.h>

#include "trainer/core/error.h"

namespace exatrain::tok {

namespace {

// The characters `tokenizers`' normalization tables know about.
const icu::UnicodeSet& unicode_9_0_set() {
  static const icu::UnicodeSet* set = [] {
    UErrorCode status = U_ZERO_ERROR;
    auto* s = new icu::UnicodeSet(icu::UnicodeString(u"[:age=9.0:]"), status);
    if (U_FAILURE(status)) fail("ICU: cannot build the Unicode 9.0 character set: {}", u_errorName(status));
    s->freeze();
    return s;
  }();
  return *set;
}

const icu::Normalizer2& base_instance(NormalizationForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormalizationForm::NFC: n = icu::Normalizer2::getNFCInstance(status); break;
    case NormalizationForm::NFD: n = icu::Normalizer2::getNFDInstance(status); break;
    case NormalizationForm::NFKC: n = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalizationForm::NFKD: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || n == nullptr) fail("ICU: cannot load the {} normalizer: {}", normalization_form_name(form), u_errorName(status));
  return *n;
}

inline bool is_ascii(std::string_view text) {
  for (unsigned char c : text) {
    if (c >= 0x80) return false;
  }
  return true;
}

}  // namespace

struct Normalizer::Step {
  NormalizationForm form;
  icu::FilteredNormalizer2 normalizer;
  explicit Step(NormalizationForm f) : form(f), normalizer(base_instance(f), unicode_9_0_set()) {}

  // True (and `out` set) when the text changes.
  bool apply(std::string_view text, std::string& out) const {
    if (is_ascii(text)) return false;  // every form leaves ASCII alone
    UErrorCode status = U_ZERO_ERROR;
    icu::StringPiece piece(text.data(), int32_t(text.size()));
    if (normalizer.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return false;
    status = U_ZERO_ERROR;
    out.clear();
    icu::StringByteSink<std::string> sink(&out, int32_t(text.size() + text.size() / 2));
    normalizer.normalizeUTF8(0, piece, sink, nullptr, status);
    if (U_FAILURE(status)) fail("ICU: {} normalization failed: {}", normalization_form_name(form), u_errorName(status));
    return std::string_view(out) != text;
  }
};

Normalizer::Normalizer() = default;
Normalizer::Normalizer(std::vector<NormalizationForm> steps) {
  for (auto form : steps) steps_.push_back(std::make_unique<Step>(form));
}
Normalizer::Normalizer(Normalizer&&) noexcept = default;
Normalizer& Normalizer::operator=(Normalizer&&) noexcept = default;
Normalizer::~Normalizer() = default;

std::string_view Normalizer::apply(std::string_view text, std::string& out, std::string& tmp) const {
  std::string_view current = text;
  for (const auto& step : steps_) {
    // Normalize into whichever buffer does not hold `current`.
    std::string& target = (current.data() == out.data()) ? tmp : out;
    if (step->apply(current, target)) current = target;
  }
  if (!current.empty() && current.data() == tmp.data()) {
    out.assign(current);
    current = out;
  }
  return current;
}

const char* normalization_form_name(NormalizationForm form) {
  switch (form) {
    case NormalizationForm::NFC: return "NFC";
    case NormalizationForm::NFD: return "NFD";
    case NormalizationForm::NFKC: return "NFKC";
    case NormalizationForm::NFKD: return "NFKD";
  }
  return "?";
}

}  // namespace exatrain::tok
