// Reading tokenizer.json into Tokenizer::Impl. Anything malformed or unsupported is an error
// naming the file and the JSON path, e.g. "t.json: pre_tokenizer.pretokenizers[1]: ...".
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "data/tokenizer/onig_regex.h"
#include "data/tokenizer/tokenizer_impl.h"
#include "trainer/core/error.h"
#include "trainer/core/json_error.h"

namespace exatrain {

namespace {

using nlohmann::json;

class Reader {
 public:
  explicit Reader(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void error(const std::string& path, const std::string& what) const {
    fail("{}: {}: {}", name_, path, what);
  }

  const json& require(const json& obj, const std::string& path, const char* key) const {
    auto it = obj.find(key);
    if (it == obj.end()) error(path, fmt::format("missing key \"{}\"", key));
    return *it;
  }
  std::string type_of(const json& obj, const std::string& path) const {
    if (!obj.is_object()) error(path, "expected an object");
    const json& t = require(obj, path, "type");
    if (!t.is_string()) error(path + ".type", "expected a string");
    return t.get<std::string>();
  }
  bool get_bool(const json& obj, const std::string& path, const char* key, bool fallback) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) error(path + "." + key, "expected true or false");
    return it->get<bool>();
  }
  std::optional<std::string> get_string(const json& obj, const std::string& path, const char* key) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) error(path + "." + key, "expected a string");
    return it->get<std::string>();
  }
  uint32_t get_id(const json& v, const std::string& path) const {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 0xFFFFFFFFull) error(path, "expected a token id (0..4294967295)");
    return uint32_t(v.get<uint64_t>());
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

void read_normalizer(const Reader& r, const json& j, const std::string& path, std::vector<tok::NormalizationForm>& out) {
  std::string type = r.type_of(j, path);
  if (type == "NFC") {
    out.push_back(tok::NormalizationForm::NFC);
  } else if (type == "NFD") {
    out.push_back(tok::NormalizationForm::NFD);
  } else if (type == "NFKC") {
    out.push_back(tok::NormalizationForm::NFKC);
  } else if (type == "NFKD") {
    out.push_back(tok::NormalizationForm::NFKD);
  } else if (type == "Sequence") {
    const json& list = r.require(j, path, "normalizers");
    if (!list.is_array()) r.error(path + ".normalizers", "expected a list");
    for (size_t i = 0; i < list.size(); ++i) read_normalizer(r, list[i], fmt::format("{}.normalizers[{}]", path, i), out);
  } else {
    r.error(path, fmt::format("normalizer \"{}\" is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)", type));
  }
}

tok::SplitBehavior read_behavior(const Reader& r, const json& j, const std::string& path) {
  if (!j.is_string()) r.error(path, "expected a string");
  std::string b = j.get<std::string>();
  if (b == "Removed") return tok::SplitBehavior::Removed;
  if (b == "Isolated") return tok::SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return tok::SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return tok::SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return tok::SplitBehavior::Contiguous;
  r.error(path, fmt::format("unknown split behavior \"{}\" (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)", b));
}

void read_pre_tokenizer(const Reader& r, const json& j, const std::string& path, tok::PreTokenizer& out,
                        std::vector<std::string>& description) {
  std::string type = r.type_of(j, path);
  if (type == "Sequence") {
    const json& list = r.require(j, path, "pretokenizers");
    if (!list.is_array()) r.error(path + ".pretokenizers", "expected a list");
    for (size_t i = 0; i < list.size(); ++i) {
      read_pre_tokenizer(r, list[i], fmt::format("{}.pretokenizers[{}]", path, i), out, description);
    }
  } else if (type == "Split") {
    const json& pattern = r.require(j, path, "pattern");
    std::string regex;
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      regex = pattern["Regex"].get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      regex = tok::escape_regex(pattern["String"].get<std::string>());
    } else {
      r.error(path + ".pattern", "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}");
    }
    auto behavior = read_behavior(r, r.require(j, path, "behavior"), path + ".behavior");
    bool invert = r.get_bool(j, path, "invert", false);
    try {
      out.add_split(regex, behavior, invert);
    } catch (const Error& e) {
      r.error(path + ".pattern", e.what());
    }
    description.push_back(fmt::format("pre_tokenizer: Split {:?} ({}{})", regex, j["behavior"].get<std::string>(),
                                      invert ? ", inverted" : ""));
  } else if (type == "ByteLevel") {
    bool add_prefix_space = r.get_bool(j, path, "add_prefix_space", true);
    bool use_regex = r.get_bool(j, path, "use_regex", true);
    out.add_byte_level(add_prefix_space, use_regex);
    description.push_back(fmt::format("pre_tokenizer: ByteLevel (add_prefix_space={}, use_regex={})", add_prefix_space, use_regex));
  } else {
    r.error(path, fmt::format("pre-tokenizer \"{}\" is not supported (supported: Split, ByteLevel, Sequence)", type));
  }
}

tok::BpeModel read_model(const Reader& r, const json& j, const std::string& path) {
  if (!j.is_object()) r.error(path, "expected an object");
  auto type = r.get_string(j, path, "type");
  if (type && *type != "BPE") r.error(path + ".type", fmt::format("model \"{}\" is not supported (only BPE)", *type));
  if (!type && !j.contains("merges")) r.error(path, "not a BPE model (no \"merges\")");
  auto dropout = j.find("dropout");
  if (dropout != j.end() && !dropout->is_null()) {
    if (!dropout->is_number()) r.error(path + ".dropout", "expected a number or null");
    if (dropout->get<double>() > 0.0) r.error(path + ".dropout", "BPE dropout is random; set it to null to encode deterministically");
  }
  tok::BpeOptions options;
  options.unk_token = r.get_string(j, path, "unk_token");
  options.continuing_subword_prefix = r.get_string(j, path, "continuing_subword_prefix");
  options.end_of_word_suffix = r.get_string(j, path, "end_of_word_suffix");
  options.fuse_unk = r.get_bool(j, path, "fuse_unk", false);
  options.byte_fallback = r.get_bool(j, path, "byte_fallback", false);
  options.ignore_merges = r.get_bool(j, path, "ignore_merges", false);

  const json& vocab_json = r.require(j, path, "vocab");
  if (!vocab_json.is_object()) r.error(path + ".vocab", "expected an object of token: id");
  std::vector<std::pair<std::string, uint32_t>> vocab;
  vocab.reserve(vocab_json.size());
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    vocab.emplace_back(it.key(), r.get_id(it.value(), fmt::format("{}.vocab[{:?}]", path, it.key())));
  }

  const json& merges_json = r.require(j, path, "merges");
  if (!merges_json.is_array()) r.error(path + ".merges", "expected a list");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_json.size());
  for (size_t i = 0; i < merges_json.size(); ++i) {
    const json& m = merges_json[i];
    if (m.is_string()) {
      // The legacy "a b" form; "#version" lines are skipped, as tokenizers does.
      const std::string& line = m.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      auto space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        r.error(fmt::format("{}.merges[{}]", path, i), fmt::format("{:?} is not two tokens separated by one space", line));
      }
      merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      r.error(fmt::format("{}.merges[{}]", path, i), "expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  return tok::BpeModel(std::move(vocab), merges, std::move(options), r.name() + ": " + path);
}

std::vector<tok::AddedToken> read_added_tokens(const Reader& r, const json& j, const std::string& path) {
  std::vector<tok::AddedToken> tokens;
  if (j.is_null()) return tokens;
  if (!j.is_array()) r.error(path, "expected a list");
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = fmt::format("{}[{}]", path, i);
    const json& t = j[i];
    if (!t.is_object()) r.error(p, "expected an object");
    // Every field is required, as tokenizers' deserializer requires it ("id" is read, not trusted).
    auto flag = [&](const char* key) {
      const json& v = r.require(t, p, key);
      if (!v.is_boolean()) r.error(p + "." + key, "expected true or false");
      return v.get<bool>();
    };
    r.get_id(r.require(t, p, "id"), p + ".id");
    tok::AddedToken token;
    const json& content = r.require(t, p, "content");
    if (!content.is_string()) r.error(p + ".content", "expected a string");
    token.content = content.get<std::string>();
    token.single_word = flag("single_word");
    token.lstrip = flag("lstrip");
    token.rstrip = flag("rstrip");
    token.normalized = flag("normalized");
    token.special = flag("special");
    tokens.push_back(std::move(token));
  }
  return tokens;
}

std::vector<uint32_t> cls_or_sep(const Reader& r, const json& j, const std::string& path, const char* key) {
  const json& v = r.require(j, path, key);
  if (!v.is_array() || v.size() != 2 || !v[0].is_string()) r.error(path + "." + key, "expected [\"token\", id]");
  return {r.get_id(v[1], path + "." + key + "[1]")};
}

void read_post_processor(const Reader& r, const json& j, const std::string& path, std::vector<PostProcessStep>& out,
                         std::vector<std::string>& description) {
  std::string type = r.type_of(j, path);
  if (type == "ByteLevel") {
    description.push_back("post_processor: ByteLevel (ids unchanged)");
  } else if (type == "Sequence") {
    const json& list = r.require(j, path, "processors");
    if (!list.is_array()) r.error(path + ".processors", "expected a list");
    for (size_t i = 0; i < list.size(); ++i) {
      read_post_processor(r, list[i], fmt::format("{}.processors[{}]", path, i), out, description);
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    PostProcessStep step;
    step.items.push_back(cls_or_sep(r, j, path, "cls")[0]);
    step.items.push_back(PostProcessStep::kSequence);
    step.items.push_back(cls_or_sep(r, j, path, "sep")[0]);
    out.push_back(step);
    description.push_back(fmt::format("post_processor: {} (cls + sequence + sep)", type));
  } else if (type == "TemplateProcessing") {
    const json& single = r.require(j, path, "single");
    const json& specials = r.require(j, path, "special_tokens");
    if (!single.is_array()) r.error(path + ".single", "expected a list");
    if (!specials.is_object()) r.error(path + ".special_tokens", "expected an object");
    PostProcessStep step;
    std::string shape;
    for (size_t i = 0; i < single.size(); ++i) {
      std::string p = fmt::format("{}.single[{}]", path, i);
      const json& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        const json& seq = item["Sequence"];
        if (!seq.is_object() || seq.value("id", "") != "A") r.error(p, "a single-sequence template can only hold sequence \"A\"");
        step.items.push_back(PostProcessStep::kSequence);
        shape += " $A";
      } else if (item.is_object() && item.contains("SpecialToken")) {
        const json& st = item["SpecialToken"];
        if (!st.is_object() || !st.contains("id") || !st["id"].is_string()) r.error(p, "expected {\"SpecialToken\": {\"id\": ...}}");
        std::string name = st["id"].get<std::string>();
        auto it = specials.find(name);
        if (it == specials.end()) r.error(p, fmt::format("special token \"{}\" is not in special_tokens", name));
        const json& ids = r.require(*it, path + ".special_tokens." + name, "ids");
        if (!ids.is_array()) r.error(path + ".special_tokens." + name + ".ids", "expected a list");
        for (size_t k = 0; k < ids.size(); ++k) {
          step.items.push_back(r.get_id(ids[k], fmt::format("{}.special_tokens.{}.ids[{}]", path, name, k)));
        }
        shape += " " + name;
      } else {
        r.error(p, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    out.push_back(step);
    description.push_back(fmt::format("post_processor: TemplateProcessing (single:{})", shape));
  } else {
    r.error(path, fmt::format("post-processor \"{}\" is not supported (supported: ByteLevel, TemplateProcessing, "
                              "RobertaProcessing, BertProcessing, Sequence)",
                              type));
  }
}

void read_decoder(const Reader& r, const json& j, const std::string& path, std::vector<DecoderStep>& out) {
  std::string type = r.type_of(j, path);
  if (type == "ByteLevel") {
    out.push_back(DecoderStep::ByteLevel);
  } else if (type == "Sequence") {
    const json& list = r.require(j, path, "decoders");
    if (!list.is_array()) r.error(path + ".decoders", "expected a list");
    for (size_t i = 0; i < list.size(); ++i) read_decoder(r, list[i], fmt::format("{}.decoders[{}]", path, i), out);
  } else {
    r.error(path, fmt::format("decoder \"{}\" is not supported (supported: ByteLevel, Sequence)", type));
  }
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(std::string_view text, const std::string& name) {
  Reader r(name);
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", name, json_error_text(e, text));
  }
  if (!j.is_object()) fail("{}: expected a JSON object at the top level", name);
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->name = name;

  if (auto v = r.get_string(j, "tokenizer", "version"); v && *v != "1.0") {
    r.error("version", fmt::format("unknown tokenizer.json version \"{}\" (expected \"1.0\")", *v));
  }
  for (const char* key : {"truncation", "padding"}) {
    if (j.contains(key) && !j[key].is_null()) {
      r.error(key, "is set; exatrain encodes whole texts and does not pad: set it to null");
    }
  }

  std::vector<tok::NormalizationForm> forms;
  if (j.contains("normalizer") && !j["normalizer"].is_null()) read_normalizer(r, j["normalizer"], "normalizer", forms);
  {
    std::string list;
    for (auto f : forms) list += std::string(list.empty() ? "" : ", ") + tok::normalization_form_name(f);
    impl->description.push_back("normalizer: " + (forms.empty() ? std::string("none") : list) +
                                (forms.empty() ? "" : " (Unicode 9.0, as tokenizers)"));
  }
  impl->normalizer = tok::Normalizer(forms);

  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    read_pre_tokenizer(r, j["pre_tokenizer"], "pre_tokenizer", impl->pre_tokenizer, impl->description);
  } else {
    impl->description.push_back("pre_tokenizer: none");
  }

  impl->model.emplace(read_model(r, r.require(j, "tokenizer", "model"), "model"));
  const auto& opts = impl->model->options();
  impl->description.push_back(fmt::format(
      "model: BPE, {} tokens{}{}{}{}", impl->model->size(), opts.byte_fallback ? ", byte_fallback" : "",
      opts.ignore_merges ? ", ignore_merges" : "", opts.unk_token ? ", unk " + *opts.unk_token : "",
      opts.fuse_unk ? " (fused)" : ""));

  std::vector<tok::AddedToken> added;
  if (j.contains("added_tokens")) added = read_added_tokens(r, j["added_tokens"], "added_tokens");
  impl->added = tok::AddedVocabulary(added, *impl->model, impl->normalizer, name + ": added_tokens");
  {
    size_t special = 0;
    for (const auto& t : impl->added.tokens()) special += impl->added.is_special(t.content);
    impl->description.push_back(fmt::format("added_tokens: {} ({} special)", impl->added.tokens().size(), special));
  }

  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    read_post_processor(r, j["post_processor"], "post_processor", impl->post_process, impl->description);
  } else {
    impl->description.push_back("post_processor: none");
  }
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    read_decoder(r, j["decoder"], "decoder", impl->decoders);
    impl->has_decoder = true;
    impl->description.push_back(fmt::format("decoder: ByteLevel{}", impl->decoders.size() > 1 ? " (x" + std::to_string(impl->decoders.size()) + ")" : ""));
  } else {
    impl->description.push_back("decoder: none (tokens joined with spaces)");
  }
  return impl;
}

}  // namespace exatrain
