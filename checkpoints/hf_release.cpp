#include "checkpoints/hf_release.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "checkpoints/hf_config.h"
#include "data/shards/manifest.h"
#include "data/tokenizer/bpe_trainer.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/core/sha256.h"
#include "trainer/model/param_spec.h"

namespace exatrain {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is this writer");

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ordered_json = nlohmann::ordered_json;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// 1234567 -> "1,234,567".
std::string with_commas(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// 1279391488 -> "1.28B", 1500000 -> "1.50M".
std::string short_count(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1000ull) return fmt::format("{:.2f}K", n / 1e3);
  return std::to_string(n);
}

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("export: cannot read the {} '{}': {}", what, path, std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("export: cannot read the {} '{}'", what, path);
  return text.str();
}

// One file of the release, hashed as it is written (the shards are never read back), made
// durable by the project's one atomic writer.
class ReleaseFile {
 public:
  explicit ReleaseFile(const std::string& path) : file_(path) {}
  void write(const void* data, size_t size) {
    sha_.update(data, size);
    file_.write(data, size);
  }
  void write(std::string_view text) { write(text.data(), text.size()); }
  // fsync, rename into place; returns the file's sha256.
  std::string finish() {
    file_.commit();
    return sha_.hex_digest();
  }
  uint64_t bytes() const { return file_.size(); }

 private:
  AtomicFileWriter file_;
  Sha256 sha_;
};

void check_weight_dtype(DType dtype) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    fail("export: dtype {} is not supported for released weights (expected F32, BF16 or F16)", dtype_name(dtype));
}

// The tensors must be the registry's specs for `config`, in its order: a release whose weights
// are bound to the wrong names would load and compute something else.
void check_against_specs(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors) {
  const std::vector<ParamSpec> specs = build_param_specs(config);
  for (size_t i = 0; i < std::max(specs.size(), tensors.size()); ++i) {
    if (i >= tensors.size())
      fail("export: {} tensors given, but this model has {}; '{}' {} is missing", tensors.size(), specs.size(),
           specs[i].name, shape_text(specs[i].shape));
    if (i >= specs.size())
      fail("export: tensor {} '{}' is not a parameter of this model ({} parameters{})", i, tensors[i].name,
           specs.size(), config.tie_embeddings && tensors[i].name == "lm_head.weight"
                             ? "; embeddings are tied: lm_head.weight is embed_tokens.weight and is not written"
                             : "");
    if (tensors[i].name != specs[i].name || tensors[i].shape != specs[i].shape)
      fail("export: tensor {} is '{}' {}, but the parameter registry for this config has '{}' {} there", i,
           tensors[i].name, shape_text(tensors[i].shape), specs[i].name, shape_text(specs[i].shape));
  }
}

std::string zero_padded(size_t n) { return fmt::format("{:05d}", n); }

// ---- tokenizer ---------------------------------------------------------------------------------

struct TokenizerFiles {
  std::string json_text;  // tokenizer.json, as given
  std::string config_json;
  std::string bos, eos, pad, unk;
};

// The name of token `id` for `key` (e.g. bos_token_id): it must be one of the tokenizer's added
// special tokens; an ordinary token there means the ids came from somewhere else (a preset).
std::string special_token_name(const Tokenizer& tok, const std::string& path, const char* key, int64_t id) {
  const std::optional<std::string> token = id >= 0 ? tok.id_to_token(uint32_t(id)) : std::nullopt;
  if (!token) fail("export: config {} {} is not an id of the tokenizer '{}' ({} ids)", key, id, path, tok.vocab_size());
  if (!tok.is_special(uint32_t(id)))
    fail("export: config {} {} is '{}' in the tokenizer '{}', an ordinary token, not a special token; the model's token "
         "ids must come from the run's tokenizer", key, id, *token, path);
  return *token;
}

TokenizerFiles make_tokenizer_files(const ModelConfig& config, const std::string& path) {
  TokenizerFiles files;
  files.json_text = read_text_file(path, "tokenizer");
  const Tokenizer tok = Tokenizer::from_json(files.json_text, path);
  if (int64_t(tok.vocab_size()) > config.vocab_size)
    fail("export: the tokenizer '{}' has {} ids but the model's vocab_size is {}: some tokens would have no embedding",
         path, tok.vocab_size(), config.vocab_size);
  files.bos = special_token_name(tok, path, "bos_token_id", config.bos_token_id);
  files.eos = special_token_name(tok, path, "eos_token_id", config.eos_token_id);
  files.pad = special_token_name(tok, path, "pad_token_id", config.pad_token_id);

  // The flags of every added token, as tokenizer.json has them (Tokenizer checked the structure).
  const json j = json::parse(files.json_text);
  TokenizerConfigFields fields;
  if (const auto it = j.find("added_tokens"); it != j.end() && it->is_array()) {
    for (const json& t : *it) {
      TokenizerConfigToken token;
      token.id = t.value("id", 0u);
      token.content = t.value("content", std::string());
      token.single_word = t.value("single_word", false);
      token.lstrip = t.value("lstrip", false);
      token.rstrip = t.value("rstrip", false);
      token.normalized = t.value("normalized", false);
      token.special = t.value("special", false);
      fields.added_tokens.push_back(std::move(token));
    }
  }
  std::sort(fields.added_tokens.begin(), fields.added_tokens.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  if (const auto m = j.find("model"); m != j.end() && m->is_object())
    if (const auto u = m->find("unk_token"); u != m->end() && u->is_string()) files.unk = u->get<std::string>();
  fields.bos = files.bos;
  fields.eos = files.eos;
  fields.pad = files.pad;
  fields.unk = files.unk;
  fields.chat_template = std::string(exaone4_chat_template());
  fields.model_max_length = config.max_position_embeddings;
  files.config_json = tokenizer_config_json(fields);
  return files;
}

// ---- model card ----------------------------------------------------------------------------------

std::string markdown_cell(std::string text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out.empty() ? "(not recorded)" : out;
}

// YAML double-quoted scalar.
std::string yaml_string(const std::string& text) { return json(text).dump(); }

struct DatasetEntry {
  std::string dir;
  DatasetManifest manifest;
  std::string manifest_sha256;  // of manifest.pb, which records every shard's sha256
};

std::vector<DatasetEntry> read_datasets(const std::vector<std::string>& dirs) {
  std::vector<DatasetEntry> out;
  for (const std::string& dir : dirs) {
    DatasetEntry e;
    e.dir = dir;
    e.manifest = read_manifest(dir);
    e.manifest_sha256 = sha256_file_hex((fs::path(dir) / kManifestFile).string());
    out.push_back(std::move(e));
  }
  return out;
}

std::string attention_summary(const ModelConfig& c) {
  const std::vector<LayerKind> kinds = c.layer_kinds();
  const auto sliding = std::count(kinds.begin(), kinds.end(), LayerKind::Sliding);
  if (sliding == 0) return "full causal attention with RoPE on every layer";
  const int64_t global = int64_t(kinds.size()) - sliding;
  return fmt::format("hybrid: {} sliding-window layer{} (window {}, RoPE) and {} global layer{} (no positional "
                     "encoding)", sliding, sliding == 1 ? "" : "s", c.sliding_window, global, global == 1 ? "" : "s");
}

std::string model_card(const ModelConfig& c, const std::vector<ReleaseTensor>& tensors, const ReleaseInfo& info,
                       const std::string& title, const std::vector<DatasetEntry>& datasets,
                       const std::vector<ReleaseShard>& shards, bool have_tokenizer, const TokenizerFiles& tok) {
  uint64_t params = 0;
  for (const auto& t : tensors) params += uint64_t(t.numel());
  std::string s = "---\n";
  // The Hub's license field takes its own (lower-case SPDX) ids; an expression goes to license_name.
  const bool simple_license = !info.license.empty() && info.license.find_first_of(" ()") == std::string::npos;
  if (simple_license) {
    std::string lower = info.license;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    s += "license: " + lower + "\n";
  } else {
    s += "license: other\n";
    s += "license_name: " + yaml_string(info.license.empty() ? "not-stated" : info.license) + "\n";
  }
  s += "library_name: transformers\npipeline_tag: text-generation\n";
  if (!info.base_model.empty()) s += "base_model: " + yaml_string(info.base_model) + "\n";
  s += "tags:\n- exaone4\n- exatrain\n- text-generation\n";
  if (have_tokenizer) s += "- conversational\n";
  s += "---\n\n";

  s += "# " + title + "\n\n";
  s += fmt::format("An EXAONE-4 architecture (`Exaone4ForCausalLM`) decoder trained with exatrain {} (commit {}), "
                   "exported as {} safetensors.\n\n",
                   version_string(), git_commit(), hf_dtype_name(info.dtype));

  s += "## Model\n\n| | |\n|---|---|\n";
  s += fmt::format("| parameters | {} ({}) |\n", with_commas(params), short_count(params));
  s += fmt::format("| layers | {} |\n", c.num_layers);
  s += fmt::format("| hidden size | {} |\n", c.hidden_size);
  s += fmt::format("| MLP size | {} (SwiGLU) |\n", c.intermediate_size);
  s += fmt::format("| attention heads | {} query, {} key/value (head dim {}) |\n", c.num_heads, c.num_kv_heads,
                   c.resolved_head_dim());
  s += fmt::format("| attention | {} |\n", attention_summary(c));
  s += fmt::format("| RoPE | theta {}{} |\n", c.rope_theta,
                   c.rope_scaling.type == RopeScaling::Llama3
                       ? fmt::format(", llama3 scaling (factor {}, original length {})", c.rope_scaling.factor,
                                     c.rope_scaling.original_max_position)
                       : std::string());
  s += fmt::format("| vocabulary | {} |\n", c.vocab_size);
  s += fmt::format("| context length | {} |\n", c.max_position_embeddings);
  s += fmt::format("| embeddings | {} |\n", c.tie_embeddings ? "tied (lm_head shares embed_tokens)" : "untied");
  s += fmt::format("| weights | {}, {} file(s) |\n", hf_dtype_name(info.dtype), shards.size());
  if (have_tokenizer)
    s += fmt::format("| special tokens | bos `{}` ({}), eos `{}` ({}), pad `{}` ({}) |\n", markdown_cell(tok.bos),
                     c.bos_token_id, markdown_cell(tok.eos), c.eos_token_id, markdown_cell(tok.pad), c.pad_token_id);
  s += "\n";

  s += "## Training\n\n| | |\n|---|---|\n";
  s += fmt::format("| steps | {} |\n", with_commas(uint64_t(std::max<int64_t>(info.steps, 0))));
  s += fmt::format("| tokens | {} ({}) |\n", with_commas(uint64_t(std::max<int64_t>(info.tokens, 0))),
                   short_count(uint64_t(std::max<int64_t>(info.tokens, 0))));
  s += fmt::format("| layout | {} |\n", markdown_cell(info.layout));
  if (!info.base_model.empty()) s += fmt::format("| started from | {} |\n", markdown_cell(info.base_model));
  s += "\n";

  s += "## Data\n\n";
  if (datasets.empty()) {
    s += "No prepared dataset was recorded for this export.\n\n";
  } else {
    s += "Every dataset the run trained on, from its exatrain manifest (`manifest.pb`, whose sha256 pins the "
         "sha256 of every token shard).\n\n";
    s += "| dataset | source | license (SPDX) | tokens | documents | manifest sha256 |\n|---|---|---|---|---|---|\n";
    for (const auto& d : datasets)
      s += fmt::format("| {} | {} | {} | {} | {} | `{}` |\n", markdown_cell(d.manifest.name),
                       markdown_cell(d.manifest.source), markdown_cell(d.manifest.license),
                       with_commas(d.manifest.total_tokens), with_commas(d.manifest.total_documents),
                       d.manifest_sha256);
    s += "\nInput files (sha256 of the text as read):\n\n";
    for (const auto& d : datasets)
      for (const auto& in : d.manifest.inputs)
        s += fmt::format("- {}: `{}` {} bytes, sha256 `{}`\n", markdown_cell(d.manifest.name), markdown_cell(in.name),
                         with_commas(in.bytes), in.sha256);
    s += "\n";
  }

  s += "## Use\n\n```python\nimport torch\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n";
  s += "path = \"" + title + "\"  # this directory, or its Hub repository\n";
  s += fmt::format("model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.{})\n", hf_dtype_name(info.dtype));
  if (have_tokenizer) {
    s += "tokenizer = AutoTokenizer.from_pretrained(path)\n\n"
         "messages = [\n"
         "    {\"role\": \"system\", \"content\": \"You are a helpful assistant.\"},\n"
         "    {\"role\": \"user\", \"content\": \"In the beginning?\"},\n"
         "]\n"
         "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
         "return_dict=True)\n"
         "output = model.generate(**inputs, max_new_tokens=64)\n"
         "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))\n";
  } else {
    s += "input_ids = torch.tensor([[" + std::to_string(c.bos_token_id) + "]])\n"
         "print(model(input_ids).logits.shape)\n";
  }
  s += "```\n\n";
  if (have_tokenizer)
    s += "The chat template (in `tokenizer_config.json`) is EXAONE-4's: `[|system|]`, `[|user|]`, `[|assistant|]` and "
         "`[|tool|]` turns, each closed by `[|endofturn|]`; an assistant turn starts with an (empty) "
         "`<think>\\n\\n</think>\\n\\n` block unless `enable_thinking=True` is passed to `apply_chat_template`.\n\n";
  else
    s += "This export has no tokenizer: the token ids are the training data's.\n\n";

  s += "## Files\n\nCheck them with `sha256sum -c SHA256SUMS`. Weights are round-to-nearest-even conversions of the "
       "fp32 training state.\n\n";
  if (info.license.empty()) s += "The license of these weights was not stated at export.\n";
  else s += "License of the weights: " + info.license + ". Each dataset keeps its own license (above).\n";
  return s;
}

std::string sha256sums_text(std::vector<std::pair<std::string, std::string>> hashes) {
  std::sort(hashes.begin(), hashes.end());
  std::string text;
  for (const auto& [file, hex] : hashes) text += hex + "  " + file + "\n";  // two spaces: text mode
  return text;
}

}  // namespace

int64_t ReleaseTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t parse_shard_size(const std::string& text) {
  auto bad = [&](const char* why) -> uint64_t {
    fail("max shard size '{}': {}; expected a whole number of bytes with an optional unit KB, MB, GB, TB (decimal, "
         "as transformers' max_shard_size) or KiB, MiB, GiB, e.g. 5GB, 500MB, 10KB, 123", text, why);
  };
  size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  const size_t digits_begin = i;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == digits_begin) return bad("no number");
  const std::string digits = text.substr(digits_begin, i - digits_begin);
  while (i < text.size() && text[i] == ' ') ++i;
  std::string unit = text.substr(i);
  while (!unit.empty() && unit.back() == ' ') unit.pop_back();
  static const std::map<std::string, uint64_t> units = {
      {"", 1},          {"B", 1},
      {"KB", 1000},     {"kB", 1000},      {"MB", 1000000},     {"GB", 1000000000}, {"TB", 1000000000000},
      {"KiB", 1 << 10}, {"MiB", 1 << 20},  {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
  };
  const auto it = units.find(unit);
  if (it == units.end()) {
    if (!unit.empty() && unit.back() == 'b') return bad("a lower-case 'b' means bits to transformers; write B for bytes");
    return bad("unknown unit");
  }
  if (digits.size() > 19) return bad("too large");
  const uint64_t value = std::stoull(digits);
  if (value == 0) return bad("must be more than 0");
  if (value > UINT64_MAX / it->second) return bad("too large");
  return value * it->second;
}

std::vector<ReleaseShard> plan_release_shards(const std::vector<ReleaseTensor>& tensors, DType dtype,
                                              uint64_t max_shard_bytes) {
  check_weight_dtype(dtype);
  if (max_shard_bytes == 0) fail("export: the max shard size must be more than 0 bytes");
  std::vector<ReleaseShard> shards;
  ReleaseShard current;
  auto close_current = [&] {
    if (!current.tensors.empty()) shards.push_back(std::move(current));
    current = ReleaseShard{};
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = uint64_t(tensors[i].numel()) * dtype_size(dtype);
    if (bytes > max_shard_bytes) {  // a shard of its own
      close_current();
      shards.push_back(ReleaseShard{"", {i}, bytes});
      continue;
    }
    if (current.data_bytes + bytes > max_shard_bytes) close_current();
    current.tensors.push_back(i);
    current.data_bytes += bytes;
  }
  close_current();
  if (shards.empty()) shards.push_back(ReleaseShard{});
  if (shards.size() == 1) {
    shards[0].file = "model.safetensors";
  } else {
    for (size_t k = 0; k < shards.size(); ++k)
      shards[k].file = "model-" + zero_padded(k + 1) + "-of-" + zero_padded(shards.size()) + ".safetensors";
  }
  return shards;
}

std::string release_shard_header(const std::vector<ReleaseTensor>& tensors, const ReleaseShard& shard, DType dtype) {
  ordered_json header;
  header["__metadata__"] = ordered_json{{"format", "pt"}};
  uint64_t offset = 0;
  for (size_t i : shard.tensors) {
    const uint64_t bytes = uint64_t(tensors[i].numel()) * dtype_size(dtype);
    header[tensors[i].name] = ordered_json{
        {"dtype", dtype_name(dtype)}, {"shape", tensors[i].shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::string release_index_json(const std::vector<ReleaseTensor>& tensors, const std::vector<ReleaseShard>& shards,
                               DType dtype) {
  json weight_map = json::object();
  uint64_t total_size = 0, total_parameters = 0;
  for (const auto& shard : shards) {
    for (size_t i : shard.tensors) {
      weight_map[tensors[i].name] = shard.file;
      total_parameters += uint64_t(tensors[i].numel());
    }
    total_size += shard.data_bytes;
  }
  (void)dtype;
  const json index = {{"metadata", {{"total_size", total_size}, {"total_parameters", total_parameters}}},
                      {"weight_map", weight_map}};
  return index.dump(2) + "\n";
}

std::string generation_config_json(const ModelConfig& config) {
  const json g = {{"bos_token_id", config.bos_token_id},
                  {"eos_token_id", config.eos_token_id},
                  {"pad_token_id", config.pad_token_id},
                  {"transformers_version", hf_transformers_version()}};
  return g.dump(2) + "\n";
}

namespace {

// Everything about a release that is known before a byte is written: checked inputs, the shard
// plan, the directories. Computed the same way by every rank of a parallel export.
struct ReleasePlan {
  std::string final_dir, tmp_dir;
  fs::path parent;
  std::vector<DatasetEntry> datasets;
  bool have_tokenizer = false;
  TokenizerFiles tok;
  std::vector<ReleaseShard> shards;
  std::string title;
};

ReleasePlan plan_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const ReleaseInfo& info,
                         const std::string& dir) {
  check_weight_dtype(info.dtype);
  check_against_specs(config, tensors);
  if (dir.empty()) fail("export: the output directory is empty");
  ReleasePlan plan;
  fs::path out = fs::path(dir);
  if (out.filename().empty()) out = out.parent_path();  // "DIR/"
  plan.final_dir = out.string();
  plan.tmp_dir = plan.final_dir + ".tmp";
  plan.parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  // Read everything that can fail before the first byte is written.
  plan.datasets = read_datasets(info.dataset_dirs);
  plan.have_tokenizer = !info.tokenizer_json.empty();
  if (plan.have_tokenizer) plan.tok = make_tokenizer_files(config, info.tokenizer_json);
  plan.shards = plan_release_shards(tensors, info.dtype, info.max_shard_bytes);
  plan.title = info.name.empty() ? out.filename().string() : info.name;
  return plan;
}

}  // namespace

void begin_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const ReleaseInfo& info,
                   const std::string& dir) {
  const ReleasePlan plan = plan_release(config, tensors, info, dir);
  std::error_code ec;
  if (fs::exists(plan.final_dir, ec)) {
    if (!fs::is_directory(plan.final_dir, ec)) fail("export: '{}' exists and is not a directory", plan.final_dir);
    if (!fs::is_empty(plan.final_dir, ec))
      fail("export: '{}' exists and is not empty; a release is never written over another directory: choose a new "
           "output directory or remove this one", plan.final_dir);
  }
  fs::create_directories(plan.parent, ec);
  if (ec) fail("export: cannot create directory '{}': {}", plan.parent.string(), ec.message());
  if (fs::exists(fs::symlink_status(plan.tmp_dir, ec))) {
    log_warn("export: removing '{}' left by an interrupted export", plan.tmp_dir);
    fs::remove_all(plan.tmp_dir, ec);
    if (ec) fail("export: cannot remove the left-over '{}': {}", plan.tmp_dir, ec.message());
  }
  if (!fs::create_directory(plan.tmp_dir, ec) || ec)
    fail("export: cannot create directory '{}': {}", plan.tmp_dir, ec ? ec.message() : "it exists");
}

std::string write_release_shards(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors,
                                 const TensorFiller& fill, const ReleaseInfo& info, const std::string& dir, int part,
                                 int parts) {
  const ReleasePlan plan = plan_release(config, tensors, info, dir);
  std::string hashes;  // "FILE SHA256\n" per shard written
  // Weights: the header first (names, shapes and dtype are known), then one tensor at a time.
  std::vector<float> values;  // the current tensor, fp32
  constexpr int64_t kChunk = int64_t(1) << 20;
  std::vector<uint8_t> converted;
  for (size_t s = static_cast<size_t>(part); s < plan.shards.size(); s += static_cast<size_t>(parts)) {
    const ReleaseShard& shard = plan.shards[s];
    const std::string path = (fs::path(plan.tmp_dir) / shard.file).string();
    ReleaseFile f(path);
    const std::string header = release_shard_header(tensors, shard, info.dtype);
    uint8_t length[8];
    const uint64_t header_size = header.size();
    std::memcpy(length, &header_size, 8);
    f.write(length, 8);
    f.write(header);
    for (size_t i : shard.tensors) {
      const ReleaseTensor& t = tensors[i];
      const int64_t n = t.numel();
      values.resize(size_t(n));
      fill(i, std::span<float>(values.data(), values.size()));
      for (int64_t k = 0; k < n; ++k) {
        if (!std::isfinite(values[size_t(k)]))
          fail("export: tensor '{}' has a non-finite value ({}) at element {}; refusing to release it", t.name,
               values[size_t(k)], k);
        if (info.dtype == DType::F16 && std::fabs(values[size_t(k)]) >= 65520.0f)
          fail("export: tensor '{}' element {} is {}, beyond the F16 range (65504); export as bf16 or fp32", t.name, k,
               values[size_t(k)]);
      }
      if (info.dtype == DType::F32) {
        f.write(values.data(), size_t(n) * sizeof(float));
      } else {
        converted.resize(size_t(std::min(n, kChunk)) * dtype_size(info.dtype));
        for (int64_t k = 0; k < n; k += kChunk) {
          const int64_t m = std::min(kChunk, n - k);
          convert_f32_to(info.dtype, values.data() + k, converted.data(), m);
          f.write(converted.data(), size_t(m) * dtype_size(info.dtype));
        }
      }
    }
    const uint64_t expected = 8 + header_size + shard.data_bytes;
    if (f.bytes() != expected) fail("export: internal error: '{}' has {} bytes, expected {}", path, f.bytes(), expected);
    hashes += shard.file + " " + f.finish() + "\n";
  }
  return hashes;
}

void finish_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const ReleaseInfo& info,
                    const std::string& dir, const std::string& shard_hashes) {
  const ReleasePlan plan = plan_release(config, tensors, info, dir);
  std::error_code ec;
  try {
    std::vector<std::pair<std::string, std::string>> hashes;  // file -> sha256
    std::istringstream lines(shard_hashes);
    for (std::string file, sha; lines >> file >> sha;) hashes.emplace_back(file, sha);
    if (hashes.size() != plan.shards.size())
      fail("export: internal error: {} of {} shards written", hashes.size(), plan.shards.size());
    auto write_small = [&](const std::string& name, std::string_view text) {
      ReleaseFile f((fs::path(plan.tmp_dir) / name).string());
      f.write(text);
      hashes.emplace_back(name, f.finish());
    };
    if (plan.shards.size() > 1)
      write_small("model.safetensors.index.json", release_index_json(tensors, plan.shards, info.dtype));
    write_small("config.json", hf_config_json(config, info.dtype));
    write_small("generation_config.json", generation_config_json(config));
    if (plan.have_tokenizer) {
      write_small("tokenizer.json", plan.tok.json_text);
      write_small("tokenizer_config.json", plan.tok.config_json);
    }
    write_small("README.md", model_card(config, tensors, info, plan.title, plan.datasets, plan.shards,
                                        plan.have_tokenizer, plan.tok));
    write_small("SHA256SUMS", sha256sums_text(hashes));
    fsync_directory(plan.tmp_dir);
    // rename(2) replaces an empty directory atomically; anything else was refused in begin_release.
    if (::rename(plan.tmp_dir.c_str(), plan.final_dir.c_str()) != 0)
      fail("export: cannot rename '{}' to '{}': {}", plan.tmp_dir, plan.final_dir, std::strerror(errno));
    fsync_directory(plan.parent.string());
  } catch (...) {
    fs::remove_all(plan.tmp_dir, ec);
    throw;
  }
}

void write_hf_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const TensorFiller& fill,
                      const ReleaseInfo& info, const std::string& dir) {
  begin_release(config, tensors, info, dir);
  std::string hashes;
  try {
    hashes = write_release_shards(config, tensors, fill, info, dir, 0, 1);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(plan_release(config, tensors, info, dir).tmp_dir, ec);
    throw;
  }
  finish_release(config, tensors, info, dir, hashes);
}

}  // namespace exatrain
