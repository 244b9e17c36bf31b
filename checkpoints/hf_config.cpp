#include "checkpoints/hf_config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"
#include "trainer/core/json_error.h"

namespace exatrain {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Typed access to one JSON object, with errors that name the file (and the enclosing key).
class JsonKeys {
 public:
  JsonKeys(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  bool has(const char* key) const { return obj_.contains(key); }
  // The value, or nullptr when the key is absent or null.
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t required_int(const char* key, int64_t min) const {
    if (!has(key)) fail("{}: missing required key '{}'", where_, key);
    std::optional<int64_t> v = optional_int(key, min);
    if (!v) wrong(key, "an integer", obj_.at(key));
    return *v;
  }
  std::optional<int64_t> optional_int(const char* key, int64_t min) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) wrong(key, "an integer", *v);
    const int64_t x = v->get<int64_t>();
    if (x < min) fail("{}: '{}' must be >= {}, found {}", where_, key, min, x);
    return x;
  }
  std::optional<double> optional_positive(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) wrong(key, "a number", *v);
    const double x = v->get<double>();
    if (!(x > 0)) fail("{}: '{}' must be > 0, found {}", where_, key, v->dump());
    return x;
  }
  double required_positive(const char* key) const {
    if (!find(key)) fail("{}: missing required key '{}'", where_, key);
    return *optional_positive(key);
  }
  std::optional<bool> optional_bool(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong(key, "true or false", *v);
    return v->get<bool>();
  }
  std::optional<std::string> optional_string(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong(key, "a string", *v);
    return v->get<std::string>();
  }

  [[noreturn]] void wrong(const char* key, const char* expected, const json& v) const {
    fail("{}: '{}' must be {}, found {} {}", where_, key, expected, v.type_name(), v.dump().substr(0, 60));
  }
  const std::string& where() const { return where_; }

 private:
  const json& obj_;
  std::string where_;
};

json load_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) fail("{}: not found; a Hugging Face model directory needs a config.json", path);
    fail("{}: cannot read the file", path);
  }
  std::stringstream text;
  text << in.rdbuf();
  const std::string bytes = text.str();
  try {
    return json::parse(bytes);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, json_error_text(e, bytes));
  }
}

// Only the rope types exatrain implements; everything else would silently compute other positions.
void read_rope(const JsonKeys& top, ModelConfig& m) {
  // transformers gives a non-null rope_scaling priority over rope_parameters (convert_rope_params_to_dict).
  const char* section = top.find("rope_scaling") ? "rope_scaling" : "rope_parameters";
  const json empty = json::object();
  const json* params = top.find(section);
  if (params && !params->is_object()) top.wrong(section, "an object", *params);
  if (!params) params = &empty;
  const JsonKeys rope(*params, top.where() + ": " + section);
  for (const char* layer_type : {"sliding_attention", "full_attention"})
    if (rope.has(layer_type))
      fail("{}: per-layer-type RoPE parameters are not supported; give one rope_type for all layers", rope.where());

  m.rope_theta = rope.optional_positive("rope_theta").value_or(top.optional_positive("rope_theta").value_or(10000.0));
  if (std::optional<double> partial = rope.optional_positive("partial_rotary_factor"); partial && *partial != 1.0)
    fail("{}: partial_rotary_factor {} is not supported (EXAONE-4 rotates the whole head)", rope.where(), *partial);

  std::string type = rope.optional_string("rope_type").value_or(rope.optional_string("type").value_or("default"));
  if (type == "default") {
    m.rope_scaling.type = RopeScaling::None;
  } else if (type == "llama3") {
    m.rope_scaling.type = RopeScaling::Llama3;
    m.rope_scaling.factor = rope.required_positive("factor");
    m.rope_scaling.low_freq_factor = rope.required_positive("low_freq_factor");
    m.rope_scaling.high_freq_factor = rope.required_positive("high_freq_factor");
    // transformers defaults the pre-training length to max_position_embeddings (standardize_rope_params).
    m.rope_scaling.original_max_position =
        rope.optional_int("original_max_position_embeddings", 1).value_or(m.max_position_embeddings);
  } else {
    fail("{}: rope_type '{}' is not supported; exatrain implements 'default' and 'llama3'", rope.where(), type);
  }
}

void read_attention_layout(const JsonKeys& c, ModelConfig& m) {
  // An absent sliding_window means transformers' Exaone4Config default (4096, pattern 4), so that we
  // build the model transformers would; null means no window.
  if (!c.has("sliding_window")) m.sliding_window = 4096;
  else m.sliding_window = c.optional_int("sliding_window", 1).value_or(0);

  // Absent: the default 4 applies. Null or 0 (what transformers saves for a model without a window)
  // name no pattern; ModelConfig then keeps its default, which only matters with a window.
  bool have_pattern = !c.has("sliding_window_pattern");
  if (const json* p = c.find("sliding_window_pattern")) {
    if (p->is_string()) {
      // "LLLG": local layers then one global one, repeating; exatrain's pattern is its length.
      const std::string s = p->get<std::string>();
      const bool ok = !s.empty() && s.back() == 'G' && s.find_first_not_of('L') == s.size() - 1;
      if (!ok)
        fail("{}: sliding_window_pattern '{}' is not supported; expected some 'L's followed by one 'G' (e.g. "
             "\"LLLG\"), or give layer_types", c.where(), s);
      m.sliding_window_pattern = static_cast<int64_t>(s.size());
      have_pattern = true;
    } else if (const int64_t n = *c.optional_int("sliding_window_pattern", 0); n > 0) {
      m.sliding_window_pattern = n;
      have_pattern = true;
    }
  }

  if (const json* types = c.find("layer_types")) {
    if (!types->is_array()) c.wrong("layer_types", "a list of strings", *types);
    for (const json& t : *types) {
      if (!t.is_string()) c.wrong("layer_types", "a list of strings", *types);
      m.layer_types.push_back(t.get<std::string>());
    }
  } else if (m.sliding_window > 0 && !have_pattern) {
    fail("{}: sliding_window is set but neither layer_types nor sliding_window_pattern says which layers are "
         "global", c.where());
  }
}

// Lets validate() point at config.json: it names keys "model.<field>", found as "(default)" otherwise.
struct PointKeysAt {
  ConfigLocations& locs;
  std::string prefix;
  SourceLoc loc;
  template <class T, class... Rest>
  void field(const char* name, T&, const char*, Rest...) {
    locs.record(prefix + name, loc);
  }
  template <class E, class Names>
  void choice(const char* name, E&, const Names&, const char*) {
    locs.record(prefix + name, loc);
  }
  template <class S>
  void section(const char* name, S& s, const char*) {
    PointKeysAt nested{locs, prefix + name + ".", loc};
    s.visit(nested);
  }
};

}  // namespace

ModelConfig read_hf_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  const json root = load_json(path);
  if (!root.is_object()) fail("{}: expected a JSON object, found {}", path, root.type_name());
  const JsonKeys c(root, path);

  const std::optional<std::string> model_type = c.optional_string("model_type");
  if (!model_type) fail("{}: missing required key 'model_type' (expected \"exaone4\")", path);
  if (*model_type != "exaone4") fail("{}: model_type is '{}', exatrain reads only exaone4 models", path, *model_type);
  if (std::string act = c.optional_string("hidden_act").value_or("silu"); act != "silu")
    fail("{}: hidden_act is '{}'; exatrain implements only silu (as EXAONE-4 uses)", path, act);

  ModelConfig m;
  m.vocab_size = c.required_int("vocab_size", 1);
  m.hidden_size = c.required_int("hidden_size", 1);
  m.intermediate_size = c.required_int("intermediate_size", 1);
  m.num_layers = c.required_int("num_hidden_layers", 1);
  m.num_heads = c.required_int("num_attention_heads", 1);
  m.num_kv_heads = c.required_int("num_key_value_heads", 1);
  m.head_dim = c.optional_int("head_dim", 1).value_or(0);
  m.rms_norm_eps = c.optional_positive("rms_norm_eps").value_or(m.rms_norm_eps);
  m.max_position_embeddings = c.optional_int("max_position_embeddings", 1).value_or(m.max_position_embeddings);
  m.init_std = c.optional_positive("initializer_range").value_or(m.init_std);
  m.tie_embeddings = c.optional_bool("tie_word_embeddings").value_or(false);  // Exaone4Config's default
  m.pad_token_id = c.optional_int("pad_token_id", 0).value_or(m.pad_token_id);
  m.bos_token_id = c.optional_int("bos_token_id", 0).value_or(m.bos_token_id);
  if (const json* eos = c.find("eos_token_id"); eos && eos->is_array()) {  // several stop ids: the first
    if (eos->empty() || !(*eos)[0].is_number_integer() || (*eos)[0].get<int64_t>() < 0)
      c.wrong("eos_token_id", "an integer or a non-empty list of integers", *eos);
    m.eos_token_id = (*eos)[0].get<int64_t>();
  } else {
    m.eos_token_id = c.optional_int("eos_token_id", 0).value_or(m.eos_token_id);
  }
  read_attention_layout(c, m);
  read_rope(c, m);

  ConfigLocations locs;
  PointKeysAt pointer{locs, "model.", SourceLoc{path}};
  m.visit(pointer);
  m.validate(locs, "model");
  return m;
}

#ifndef EXATRAIN_TRANSFORMERS_VERSION
#error "EXATRAIN_TRANSFORMERS_VERSION is set by CMakeLists.txt from launch/requirements.txt"
#endif

const char* hf_transformers_version() { return EXATRAIN_TRANSFORMERS_VERSION; }

const char* hf_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F64: return "float64";
    default: fail("{} is not a dtype for model weights (expected F32, BF16 or F16)", dtype_name(dtype));
  }
}

std::string hf_config_json(const ModelConfig& m, DType dtype) {
  json rope = {{"rope_type", "default"}, {"rope_theta", m.rope_theta}};
  if (m.rope_scaling.type == RopeScaling::Llama3) {
    rope["rope_type"] = "llama3";
    rope["factor"] = m.rope_scaling.factor;
    rope["low_freq_factor"] = m.rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = m.rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = m.rope_scaling.original_max_position;
  }
  json layer_types = json::array();
  for (LayerKind kind : m.layer_kinds())
    layer_types.push_back(kind == LayerKind::Sliding ? "sliding_attention" : "full_attention");

  // json keeps keys sorted, as transformers writes them.
  json c = {
      {"architectures", {"Exaone4ForCausalLM"}},
      {"model_type", "exaone4"},
      {"vocab_size", m.vocab_size},
      {"hidden_size", m.hidden_size},
      {"intermediate_size", m.intermediate_size},
      {"num_hidden_layers", m.num_layers},
      {"num_attention_heads", m.num_heads},
      {"num_key_value_heads", m.num_kv_heads},
      // Always explicit: the modeling code reads config.head_dim and a null there breaks it.
      {"head_dim", m.resolved_head_dim()},
      {"hidden_act", "silu"},
      {"rms_norm_eps", m.rms_norm_eps},
      {"max_position_embeddings", m.max_position_embeddings},
      {"initializer_range", m.init_std},
      {"tie_word_embeddings", m.tie_embeddings},
      {"pad_token_id", m.pad_token_id},
      {"bos_token_id", m.bos_token_id},
      {"eos_token_id", m.eos_token_id},
      {"sliding_window", m.sliding_window > 0 ? json(m.sliding_window) : json(nullptr)},
      {"sliding_window_pattern", m.sliding_window > 0 ? json(m.sliding_window_pattern) : json(nullptr)},
      {"layer_types", layer_types},
      {"rope_parameters", rope},
      {"attention_dropout", 0.0},
      {"dtype", hf_dtype_name(dtype)},
      {"transformers_version", hf_transformers_version()},
      {"use_cache", true},
  };
  return c.dump(2) + "\n";
}

void write_hf_config(const ModelConfig& m, const std::string& dir, DType dtype) {
  write_file_atomically((fs::path(dir) / "config.json").string(), hf_config_json(m, dtype));
}

}  // namespace exatrain
