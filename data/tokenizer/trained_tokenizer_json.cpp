// Step 3 of BPE training: the files a trained tokenizer is shipped as (see bpe_trainer.h).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/tokenizer/bpe_trainer.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"

namespace exatrain {

using ordered_json = nlohmann::ordered_json;

std::string trained_tokenizer_json(const TrainedBpe& bpe, const BpeTrainerOptions& options) {
  // Keys in the order `tokenizers` writes them.
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  ordered_json added = ordered_json::array();
  for (const auto& s : bpe.special_tokens) {
    uint32_t id = 0;
    while (bpe.vocab[id] != s) ++id;
    added.push_back(ordered_json{{"id", id},
                                 {"content", s},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
  }
  j["added_tokens"] = added;
  j["normalizer"] = options.nfc ? ordered_json{{"type", "NFC"}} : ordered_json(nullptr);
  j["pre_tokenizer"] = ordered_json{
      {"type", "Sequence"},
      {"pretokenizers",
       ordered_json::array({ordered_json{{"type", "Split"},
                                         {"pattern", ordered_json{{"Regex", options.split_pattern}}},
                                         {"behavior", "Isolated"},
                                         {"invert", false}},
                            ordered_json{{"type", "ByteLevel"},
                                         {"add_prefix_space", false},
                                         {"trim_offsets", false},
                                         {"use_regex", false}}})}};
  j["post_processor"] = nullptr;
  j["decoder"] = ordered_json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  // The model is written by hand: an ordered_json object inserts in linear time per key, far too
  // slow for a vocabulary of 100k+ tokens.
  auto quoted = [](const std::string& text) { return nlohmann::json(text).dump(); };
  std::string model =
      R"({"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,)"
      R"("fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{)";
  for (uint32_t id = 0; id < bpe.vocab.size(); ++id) {
    if (id) model += ',';
    model += quoted(bpe.vocab[id]);
    model += ':';
    model += std::to_string(id);
  }
  model += R"(},"merges":[)";
  for (size_t i = 0; i < bpe.merges.size(); ++i) {
    if (i) model += ',';
    model += '[' + quoted(bpe.merges[i].first) + ',' + quoted(bpe.merges[i].second) + ']';
  }
  model += "]}";
  std::string text = j.dump();
  text.pop_back();  // the closing brace
  return text + R"(,"model":)" + model + "}";
}

std::string tokenizer_config_json(const TokenizerConfigFields& fields) {
  ordered_json j;
  ordered_json decoder = ordered_json::object();
  for (const auto& t : fields.added_tokens)
    decoder[std::to_string(t.id)] = ordered_json{{"content", t.content},     {"lstrip", t.lstrip},
                                                 {"normalized", t.normalized}, {"rstrip", t.rstrip},
                                                 {"single_word", t.single_word}, {"special", t.special}};
  j["added_tokens_decoder"] = decoder;
  if (!fields.bos.empty()) j["bos_token"] = fields.bos;
  if (!fields.eos.empty()) j["eos_token"] = fields.eos;
  if (!fields.pad.empty()) j["pad_token"] = fields.pad;
  if (!fields.unk.empty()) j["unk_token"] = fields.unk;
  if (!fields.chat_template.empty()) j["chat_template"] = fields.chat_template;
  j["clean_up_tokenization_spaces"] = false;
  if (fields.model_max_length > 0) j["model_max_length"] = fields.model_max_length;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  return j.dump(2) + "\n";
}

std::string trained_tokenizer_config_json(const TrainedBpe& bpe, const std::string& bos, const std::string& eos,
                                          const std::string& pad) {
  TokenizerConfigFields fields;
  for (const auto& s : bpe.special_tokens) {
    uint32_t id = 0;
    while (bpe.vocab[id] != s) ++id;
    fields.added_tokens.push_back(TokenizerConfigToken{id, s});
  }
  fields.bos = bos;
  fields.eos = eos;
  fields.pad = pad;
  return tokenizer_config_json(fields);
}

void check_output_writable(const std::string& path) {
  if (path.empty()) fail("tokenizer train: --output is empty");
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("tokenizer train: --output '{}' is a directory; name a file", path);
  try {
    AtomicFileWriter probe(path);  // its temporary file goes when it does
  } catch (const Error& e) {
    fail("tokenizer train: cannot write next to --output: {} (check that the directory exists and is writable)",
         e.what());
  }
}

}  // namespace exatrain
