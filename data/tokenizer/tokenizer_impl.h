// The parts of a loaded tokenizer.json (private to data/tokenizer).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer/added_vocabulary.h"
#include "data/tokenizer/bpe.h"
#include "data/tokenizer/normalizer.h"
#include "data/tokenizer/pre_tokenizer.h"
#include "data/tokenizer/tokenizer.h"

namespace exatrain {

// One post-processor step for a single sequence: with add_special_tokens, the ids become
// `items` with each kSequence replaced by the ids so far (TemplateProcessing's "single";
// RobertaProcessing and BertProcessing are [cls, sequence, sep]). ByteLevel leaves ids alone.
struct PostProcessStep {
  static constexpr int64_t kSequence = -1;
  std::vector<int64_t> items;  // token ids, or kSequence
};

enum class DecoderStep { ByteLevel };

struct Tokenizer::Impl {
  std::string name;
  std::string sha256;
  tok::Normalizer normalizer;
  tok::PreTokenizer pre_tokenizer;
  std::optional<tok::BpeModel> model;
  tok::AddedVocabulary added;
  std::vector<PostProcessStep> post_process;
  bool has_decoder = false;  // without one, decode joins tokens with spaces
  std::vector<DecoderStep> decoders;
  std::vector<std::string> description;
};

std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(std::string_view json, const std::string& name);

}  // namespace exatrain
