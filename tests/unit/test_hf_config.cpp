// config.json <-> ModelConfig: transformers 5 and older layouts, errors, and a round trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoints/hf_config.h"
#include "tests/unit/scratch_dir.h"
#include "trainer/core/error.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text) << "\nexpected: " << (part)

std::vector<LayerKind> kinds(const std::string& pattern) {  // "SSSF" -> Sliding x3, Full
  std::vector<LayerKind> out;
  for (char c : pattern) out.push_back(c == 'S' ? LayerKind::Sliding : LayerKind::Full);
  return out;
}

// What transformers 5.23 save_pretrained writes for a small hybrid Exaone4Config.
const char* kTransformers5 = R"({
  "architectures": ["Exaone4ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 361,
  "head_dim": 32,
  "hidden_act": "silu",
  "hidden_size": 128,
  "initializer_range": 0.01,
  "intermediate_size": 384,
  "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
                  "sliding_attention", "full_attention"],
  "max_position_embeddings": 16384,
  "model_type": "exaone4",
  "num_attention_heads": 8,
  "num_hidden_layers": 6,
  "num_key_value_heads": 2,
  "pad_token_id": null,
  "rms_norm_eps": 1e-05,
  "rope_parameters": {
    "factor": 16.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 1000000.0,
    "rope_type": "llama3"
  },
  "sliding_window": 4096,
  "sliding_window_pattern": 4,
  "tie_word_embeddings": false,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "vocab_size": 1000
})";

// The layout of the released EXAONE-4.0 checkpoints (transformers 4.x): rope_theta at top level,
// rope_scaling, a string sliding_window_pattern and no layer_types.
const char* kOldStyle = R"({
  "architectures": ["Exaone4ForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": [361, 2],
  "hidden_act": "silu",
  "hidden_size": 256,
  "intermediate_size": 512,
  "max_position_embeddings": 131072,
  "model_type": "exaone4",
  "num_attention_heads": 8,
  "num_hidden_layers": 8,
  "num_key_value_heads": 8,
  "pad_token_id": 0,
  "rms_norm_eps": 1e-06,
  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "type": "llama3"},
  "rope_theta": 500000,
  "sliding_window": 128,
  "sliding_window_pattern": "LLLG",
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 512
})";

TEST(HfConfig, ReadsTransformers5Layout) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  write_text(dir / "config.json", kTransformers5);
  const ModelConfig m = read_hf_config(dir.string());
  EXPECT_EQ(m.vocab_size, 1000);
  EXPECT_EQ(m.hidden_size, 128);
  EXPECT_EQ(m.intermediate_size, 384);
  EXPECT_EQ(m.num_layers, 6);
  EXPECT_EQ(m.num_heads, 8);
  EXPECT_EQ(m.num_kv_heads, 2);
  EXPECT_EQ(m.head_dim, 32);
  EXPECT_DOUBLE_EQ(m.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(m.init_std, 0.01);
  EXPECT_EQ(m.max_position_embeddings, 16384);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_EQ(m.pad_token_id, ModelConfig{}.pad_token_id);  // null keeps exatrain's default
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_id, 361);
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_EQ(m.sliding_window_pattern, 4);
  EXPECT_EQ(m.layer_kinds(), kinds("SSSFSF"));  // the explicit list wins over the pattern
  EXPECT_DOUBLE_EQ(m.rope_theta, 1e6);
  EXPECT_EQ(m.rope_scaling.type, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(m.rope_scaling.factor, 16.0);
  EXPECT_DOUBLE_EQ(m.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(m.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(m.rope_scaling.original_max_position, 8192);
}

TEST(HfConfig, ReadsOldLayout) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  write_text(dir / "config.json", kOldStyle);
  const ModelConfig m = read_hf_config(dir.string());
  EXPECT_EQ(m.head_dim, 0);  // absent: hidden / heads
  EXPECT_EQ(m.resolved_head_dim(), 32);
  EXPECT_DOUBLE_EQ(m.rms_norm_eps, 1e-6);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_EQ(m.pad_token_id, 0);
  EXPECT_EQ(m.eos_token_id, 361);  // a list: the first id
  EXPECT_EQ(m.sliding_window, 128);
  EXPECT_EQ(m.sliding_window_pattern, 4);  // "LLLG"
  EXPECT_TRUE(m.layer_types.empty());
  EXPECT_EQ(m.layer_kinds(), kinds("SSSFSSSF"));
  EXPECT_DOUBLE_EQ(m.rope_theta, 500000.0);
  EXPECT_EQ(m.rope_scaling.type, RopeScaling::Llama3);  // "type", the oldest spelling
  EXPECT_DOUBLE_EQ(m.rope_scaling.factor, 8.0);
  EXPECT_EQ(m.rope_scaling.original_max_position, 131072);  // absent: max_position_embeddings
}

TEST(HfConfig, DefaultsForOptionalKeys) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  json c = {{"model_type", "exaone4"}, {"vocab_size", 64},     {"hidden_size", 32},  {"intermediate_size", 64},
            {"num_hidden_layers", 3},  {"num_attention_heads", 4}, {"num_key_value_heads", 1},
            {"sliding_window", nullptr}, {"rope_scaling", nullptr}, {"sliding_window_pattern", 0}};
  write_text(dir / "config.json", c.dump());
  ModelConfig m = read_hf_config(dir.string());
  EXPECT_EQ(m.sliding_window, 0);
  EXPECT_EQ(m.layer_kinds(), kinds("FFF"));
  EXPECT_EQ(m.rope_scaling.type, RopeScaling::None);
  EXPECT_DOUBLE_EQ(m.rope_theta, 10000.0);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_EQ(m.max_position_embeddings, 2048);
  EXPECT_EQ(m.sliding_window_pattern, ModelConfig{}.sliding_window_pattern);  // 0: none; keeps a valid default

  // An absent sliding_window is transformers' default (4096, pattern 4), not "none".
  c.erase("sliding_window");
  c.erase("sliding_window_pattern");
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 20000}};
  write_text(dir / "config.json", c.dump());
  m = read_hf_config(dir.string());
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_EQ(m.layer_kinds(), kinds("SSS"));
  EXPECT_DOUBLE_EQ(m.rope_theta, 20000.0);
}

struct BadConfig {
  const char* what;
  std::function<void(json&)> edit;
  std::string expected;
};

TEST(HfConfig, ErrorsNameTheFileAndTheKey) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "config.json").string();
  EXPECT_CONTAINS(error_of([&] { read_hf_config(dir.string()); }), path + ": not found");

  write_text(dir / "config.json", R"({"model_type": "exaone4", "vocab_size": })");
  const std::string bad_json = error_of([&] { read_hf_config(dir.string()); });
  EXPECT_CONTAINS(bad_json, path + ": invalid JSON: parse error at line 1, column 41");
  // A number beyond a double is nlohmann's out_of_range (no position of its own), not a parse_error.
  write_text(dir / "config.json", "{\"model_type\": \"exaone4\",\n  \"rms_norm_eps\": 1e999}");
  EXPECT_CONTAINS(error_of([&] { read_hf_config(dir.string()); }),
                  path + ": invalid JSON: number overflow parsing '1e999' at line 2, column 19");

  const std::vector<BadConfig> cases = {
      {"model_type", [](json& c) { c["model_type"] = "llama"; },
       "model_type is 'llama', exatrain reads only exaone4 models"},
      {"no model_type", [](json& c) { c.erase("model_type"); }, "missing required key 'model_type'"},
      {"missing key", [](json& c) { c.erase("num_key_value_heads"); }, "missing required key 'num_key_value_heads'"},
      {"wrong type", [](json& c) { c["hidden_size"] = "128"; }, "'hidden_size' must be an integer, found string"},
      {"float for int", [](json& c) { c["vocab_size"] = 1000.5; }, "'vocab_size' must be an integer"},
      {"below bound", [](json& c) { c["num_hidden_layers"] = 0; }, "'num_hidden_layers' must be >= 1, found 0"},
      {"bool type", [](json& c) { c["tie_word_embeddings"] = 1; }, "'tie_word_embeddings' must be true or false"},
      {"hidden_act", [](json& c) { c["hidden_act"] = "gelu"; }, "hidden_act is 'gelu'"},
      {"rope type", [](json& c) { c["rope_parameters"]["rope_type"] = "yarn"; },
       "rope_parameters: rope_type 'yarn' is not supported"},
      {"llama3 keys", [](json& c) { c["rope_parameters"].erase("factor"); },
       "rope_parameters: missing required key 'factor'"},
      {"rope not object", [](json& c) { c["rope_parameters"] = 5; }, "'rope_parameters' must be an object"},
      {"pattern string", [](json& c) { c["sliding_window_pattern"] = "LGLG"; c.erase("layer_types"); },
       "sliding_window_pattern 'LGLG' is not supported"},
      {"no pattern", [](json& c) { c["sliding_window_pattern"] = nullptr; c.erase("layer_types"); },
       "neither layer_types nor sliding_window_pattern"},
      {"zero pattern", [](json& c) { c["sliding_window_pattern"] = 0; c.erase("layer_types"); },
       "neither layer_types nor sliding_window_pattern"},
      {"negative pattern", [](json& c) { c["sliding_window_pattern"] = -1; }, "'sliding_window_pattern' must be >= 0"},
      {"layer_types type", [](json& c) { c["layer_types"] = {1, 2}; }, "'layer_types' must be a list of strings"},
      // validate() runs on the result, pointing at config.json.
      {"layer count", [](json& c) { c["layer_types"].erase(0); }, "model.layer_types: has 5 entries but num_layers is 6"},
      {"gqa", [](json& c) { c["num_key_value_heads"] = 3; }, "num_heads (8) must be a multiple of num_kv_heads (3)"},
      {"eos", [](json& c) { c["eos_token_id"] = 5000; }, "model.eos_token_id: 5000 must be below vocab_size (1000)"},
      {"eos list", [](json& c) { c["eos_token_id"] = json::array(); }, "'eos_token_id' must be an integer or a non-empty list"},
  };
  for (const auto& c : cases) {
    json config = json::parse(kTransformers5);
    c.edit(config);
    write_text(dir / "config.json", config.dump());
    const std::string msg = error_of([&] { read_hf_config(dir.string()); });
    EXPECT_CONTAINS(msg, path + ": ") << c.what;
    EXPECT_CONTAINS(msg, c.expected) << c.what;
    EXPECT_EQ(msg.find("(default)"), std::string::npos) << c.what << ": " << msg;
  }
}

ModelConfig small_hybrid() {
  ModelConfig m;
  m.vocab_size = 300;
  m.hidden_size = 64;
  m.intermediate_size = 96;
  m.num_layers = 5;
  m.num_heads = 4;
  m.num_kv_heads = 2;
  m.rms_norm_eps = 1e-6;
  m.rope_theta = 1e6;
  m.rope_scaling.type = RopeScaling::Llama3;
  m.rope_scaling.factor = 16;
  m.rope_scaling.original_max_position = 1024;
  m.max_position_embeddings = 4096;
  m.sliding_window = 64;
  m.sliding_window_pattern = 2;
  m.tie_embeddings = true;
  m.pad_token_id = 3;
  m.bos_token_id = 4;
  m.eos_token_id = 5;
  m.init_std = 0.03;
  return m;
}

void expect_same_model(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.resolved_head_dim(), b.resolved_head_dim());
  EXPECT_DOUBLE_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_DOUBLE_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  if (a.rope_scaling.type == RopeScaling::Llama3) {
    EXPECT_DOUBLE_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
    EXPECT_DOUBLE_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
    EXPECT_DOUBLE_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
    EXPECT_EQ(a.rope_scaling.original_max_position, b.rope_scaling.original_max_position);
  }
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.layer_kinds(), b.layer_kinds());
  for (int64_t i = 0; i < a.num_layers; ++i) EXPECT_EQ(a.layer_uses_rope(i), b.layer_uses_rope(i)) << i;
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.pad_token_id, b.pad_token_id);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_DOUBLE_EQ(a.init_std, b.init_std);
}

TEST(HfConfig, WriteThenReadRoundTrips) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const ModelConfig hybrid = small_hybrid();
  write_hf_config(hybrid, dir.string());
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "config.json");  // no temporary file
  expect_same_model(hybrid, read_hf_config(dir.string()));

  const json written = read_json(dir / "config.json");
  EXPECT_EQ(written["architectures"], json({"Exaone4ForCausalLM"}));
  EXPECT_EQ(written["model_type"], "exaone4");
  EXPECT_EQ(written["head_dim"], 16);
  EXPECT_EQ(written["sliding_window_pattern"], 2);
  EXPECT_EQ(written["layer_types"], json({"sliding_attention", "full_attention", "sliding_attention",
                                          "full_attention", "sliding_attention"}));
  EXPECT_EQ(written["rope_parameters"]["rope_type"], "llama3");
  EXPECT_EQ(written["rope_parameters"]["original_max_position_embeddings"], 1024);
  EXPECT_EQ(written["tie_word_embeddings"], true);

  // No window, explicit head_dim, default RoPE: nulls for the window, no llama3 keys.
  ModelConfig plain = small_hybrid();
  plain.sliding_window = 0;
  plain.head_dim = 8;
  plain.rope_scaling.type = RopeScaling::None;
  plain.tie_embeddings = false;
  write_hf_config(plain, dir.string());
  expect_same_model(plain, read_hf_config(dir.string()));
  const json written2 = read_json(dir / "config.json");
  EXPECT_TRUE(written2["sliding_window"].is_null());
  EXPECT_TRUE(written2["sliding_window_pattern"].is_null());
  EXPECT_EQ(written2["layer_types"].size(), 5u);
  EXPECT_EQ(written2["rope_parameters"], json({{"rope_type", "default"}, {"rope_theta", 1e6}}));

  // Explicit layer_types survive as written.
  ModelConfig listed = small_hybrid();
  listed.layer_types = {"full_attention", "sliding_attention", "sliding_attention", "sliding_attention",
                        "full_attention"};
  write_hf_config(listed, dir.string());
  expect_same_model(listed, read_hf_config(dir.string()));
}

TEST(HfConfig, WriteErrorNamesThePath) {
  const ScratchDir scratch;
  const fs::path dir = scratch.path / "missing";
  const std::string msg = error_of([&] { write_hf_config(small_hybrid(), dir.string()); });
  EXPECT_CONTAINS(msg, (dir / "config.json").string());
  EXPECT_CONTAINS(msg, "No such file or directory");
}

}  // namespace
}  // namespace exatrain
