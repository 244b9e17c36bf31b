// The open-weight release writer: shard sizes, the shard plan, the files it writes (index,
// headers, config, tokenizer, card, SHA256SUMS), streaming order and failure behaviour.
// tests/parity/check_release.py judges the same files with transformers.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "tests/unit/scratch_dir.h"
#include "checkpoints/hf_config.h"
#include "checkpoints/hf_release.h"
#include "checkpoints/safetensors.h"
#include "data/shards/manifest.h"
#include "expect_error.h"
#include "trainer/core/sha256.h"
#include "trainer/model/param_spec.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "text: " << (text) << "\nexpected: " << (part)


std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ModelConfig tiny_config(bool tied) {
  ModelConfig m;
  m.vocab_size = 40;
  m.hidden_size = 16;
  m.intermediate_size = 24;
  m.num_layers = 2;
  m.num_heads = 4;
  m.num_kv_heads = 2;
  m.sliding_window = 8;
  m.sliding_window_pattern = 2;
  m.tie_embeddings = tied;
  m.pad_token_id = 0;
  m.bos_token_id = 1;
  m.eos_token_id = 2;
  return m;
}

std::vector<ReleaseTensor> tensors_of(const ModelConfig& m) {
  std::vector<ReleaseTensor> out;
  for (const ParamSpec& s : build_param_specs(m)) out.push_back({s.name, s.shape});
  return out;
}

// A value no two elements of the model share: tensor index and element position.
float value_at(size_t index, int64_t k) { return float(index) + 0.001f * float(k % 977) - 0.37f; }

// Records every call: (index, size).
struct RecordingFiller {
  std::vector<std::pair<size_t, size_t>> calls;
  TensorFiller filler() {
    return [this](size_t index, std::span<float> out) {
      calls.emplace_back(index, out.size());
      for (size_t k = 0; k < out.size(); ++k) out[k] = value_at(index, int64_t(k));
    };
  }
};

std::vector<ReleaseTensor> synthetic(const std::vector<int64_t>& numels) {
  std::vector<ReleaseTensor> out;
  for (size_t i = 0; i < numels.size(); ++i) out.push_back({"t" + std::to_string(i), {numels[i]}});
  return out;
}

TEST(ParseShardSize, DecimalUnitsAsTransformers) {
  EXPECT_EQ(parse_shard_size("5GB"), 5000000000ull);
  EXPECT_EQ(parse_shard_size("500MB"), 500000000ull);
  EXPECT_EQ(parse_shard_size("10KB"), 10000ull);
  EXPECT_EQ(parse_shard_size("10kB"), 10000ull);
  EXPECT_EQ(parse_shard_size("2TB"), 2000000000000ull);
  EXPECT_EQ(parse_shard_size("123"), 123ull);
  EXPECT_EQ(parse_shard_size("123B"), 123ull);
  EXPECT_EQ(parse_shard_size(" 200 KB "), 200000ull);
  EXPECT_EQ(parse_shard_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_shard_size("3MiB"), 3ull << 20);
}

TEST(ParseShardSize, ClearErrors) {
  expect_error([] { parse_shard_size(""); }, {"max shard size ''", "no number", "5GB"});
  expect_error([] { parse_shard_size("GB"); }, {"no number"});
  expect_error([] { parse_shard_size("1.5GB"); }, {"'1.5GB'", "unknown unit"});
  expect_error([] { parse_shard_size("-5GB"); }, {"no number"});
  expect_error([] { parse_shard_size("5Gb"); }, {"bits"});
  expect_error([] { parse_shard_size("5XB"); }, {"unknown unit"});
  expect_error([] { parse_shard_size("0"); }, {"more than 0"});
  expect_error([] { parse_shard_size("99999999999999999999"); }, {"too large"});
  expect_error([] { parse_shard_size("20000000000TB"); }, {"too large"});
}

TEST(PlanReleaseShards, GreedyInOrderAsTransformers) {
  // F32 bytes: 400 400 1200 400 400 400 200, limit 1000.
  const auto shards = plan_release_shards(synthetic({100, 100, 300, 100, 100, 100, 50}), DType::F32, 1000);
  ASSERT_EQ(shards.size(), 4u);
  EXPECT_EQ(shards[0].tensors, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(shards[1].tensors, (std::vector<size_t>{2}));  // larger than the limit: alone
  EXPECT_EQ(shards[1].data_bytes, 1200u);
  EXPECT_EQ(shards[2].tensors, (std::vector<size_t>{3, 4}));
  EXPECT_EQ(shards[3].tensors, (std::vector<size_t>{5, 6}));
  EXPECT_EQ(shards[0].file, "model-00001-of-00004.safetensors");
  EXPECT_EQ(shards[3].file, "model-00004-of-00004.safetensors");
  // An exact fit stays in the shard (transformers splits only when the sum exceeds the limit).
  const auto exact = plan_release_shards(synthetic({250, 250}), DType::F32, 2000);
  ASSERT_EQ(exact.size(), 1u);
  EXPECT_EQ(exact[0].file, "model.safetensors");
  // bf16 halves the bytes: the same tensors fit in fewer shards.
  EXPECT_EQ(plan_release_shards(synthetic({100, 100, 100, 100}), DType::BF16, 400).size(), 2u);
  EXPECT_EQ(plan_release_shards(synthetic({100, 100, 100, 100}), DType::F32, 400).size(), 4u);
  expect_error([] { plan_release_shards(synthetic({1}), DType::I64, 10); }, {"I64"});
}

TEST(ReleaseShardHeader, PaddedJsonWithFormatPt) {
  const auto tensors = synthetic({3, 5});
  const auto shards = plan_release_shards(tensors, DType::BF16, 1000);
  const std::string header = release_shard_header(tensors, shards[0], DType::BF16);
  EXPECT_EQ(header.size() % 8, 0u);
  const json j = json::parse(header);
  EXPECT_EQ(j["__metadata__"], json({{"format", "pt"}}));
  EXPECT_EQ(j["t0"]["data_offsets"], json({0, 6}));
  EXPECT_EQ(j["t1"]["data_offsets"], json({6, 16}));
  EXPECT_EQ(j["t1"]["dtype"], "BF16");
}

// Every line "<64 hex>  <file>", sorted, one per file of the directory but itself; the hashes hold.
void expect_sha256sums(const fs::path& dir) {
  const std::string text = read_text(dir / "SHA256SUMS");
  std::istringstream lines(text);
  std::string line;
  std::vector<std::string> listed;
  const std::regex format("^[0-9a-f]{64}  [^ /]+$");
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, format)) << line;
    const std::string file = line.substr(66);
    EXPECT_EQ(line.substr(0, 64), sha256_file_hex((dir / file).string())) << file;
    listed.push_back(file);
  }
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
  std::vector<std::string> present;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != "SHA256SUMS") present.push_back(e.path().filename().string());
  std::sort(present.begin(), present.end());
  EXPECT_EQ(listed, present);
}

TEST(WriteHfRelease, ShardedBf16StreamsInOrderAndReadsBack) {
  ScratchDir scratch;
  const ModelConfig config = tiny_config(/*tied=*/false);
  const auto tensors = tensors_of(config);
  RecordingFiller rec;
  ReleaseInfo info;
  info.dtype = DType::BF16;
  info.max_shard_bytes = 1500;  // several shards; the embedding (40 x 16 x 2 = 1280 B) fits alone
  info.steps = 12;
  info.tokens = 1234567;
  info.layout = "tp 2 x pp 2 x dp 1, zero 0";
  info.name = "tiny-test";
  info.license = "Apache-2.0";
  const fs::path dir = scratch.path / "release";
  write_hf_release(config, tensors, rec.filler(), info, dir.string());

  // Streaming: the filler is called once per tensor, in registry order, with the full size.
  ASSERT_EQ(rec.calls.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(rec.calls[i].first, i);
    EXPECT_EQ(rec.calls[i].second, size_t(tensors[i].numel()));
  }
  EXPECT_FALSE(fs::exists(scratch.path / "release.tmp"));

  const auto shards = plan_release_shards(tensors, DType::BF16, info.max_shard_bytes);
  ASSERT_GT(shards.size(), 2u);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const json index = json::parse(read_text(dir / "model.safetensors.index.json"));
  uint64_t total = 0, params = 0;
  for (const auto& t : tensors) {
    total += uint64_t(t.numel()) * 2;
    params += uint64_t(t.numel());
  }
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_EQ(index["metadata"]["total_parameters"], params);
  EXPECT_EQ(index["weight_map"].size(), tensors.size());
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  EXPECT_EQ(files.size(), shards.size());
  for (const auto& file : files) {
    SafetensorsReader reader((dir / file).string());
    EXPECT_EQ(reader.metadata().at("format"), "pt") << file;
    for (const auto& t : reader.tensors()) EXPECT_EQ(index["weight_map"][t.name], file);
    // No shard holds more than the limit unless it holds a single tensor.
    uint64_t bytes = 0;
    for (const auto& t : reader.tensors()) bytes += t.end - t.begin;
    EXPECT_TRUE(bytes <= info.max_shard_bytes || reader.tensors().size() == 1) << file;
  }

  // Values: the filler's, rounded to bf16 (nearest even), under the right names.
  SafetensorsDir read(dir.string());
  EXPECT_EQ(read.names().size(), tensors.size());
  EXPECT_NE(read.find("lm_head.weight"), nullptr);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsReader* file = nullptr;
    const TensorInfo* t = read.find(tensors[i].name, &file);
    ASSERT_NE(t, nullptr) << tensors[i].name;
    EXPECT_EQ(t->dtype, DType::BF16);
    EXPECT_EQ(t->shape, tensors[i].shape);
    std::vector<uint16_t> bits(size_t(t->numel()));
    std::memcpy(bits.data(), file->data(*t), bits.size() * 2);
    for (int64_t k = 0; k < t->numel(); ++k)
      ASSERT_EQ(bits[size_t(k)], f32_to_bf16_bits(value_at(i, k))) << tensors[i].name << " element " << k;
  }

  const json cfg = json::parse(read_text(dir / "config.json"));
  EXPECT_EQ(cfg["dtype"], "bfloat16");
  EXPECT_EQ(cfg["transformers_version"], hf_transformers_version());
  EXPECT_EQ(read_hf_config(dir.string()).num_layers, config.num_layers);
  const json gen = json::parse(read_text(dir / "generation_config.json"));
  EXPECT_EQ(gen["bos_token_id"], 1);
  EXPECT_EQ(gen["eos_token_id"], 2);
  EXPECT_EQ(gen["pad_token_id"], 0);
  EXPECT_FALSE(fs::exists(dir / "tokenizer.json"));
  expect_sha256sums(dir);

  const std::string card = read_text(dir / "README.md");
  EXPECT_EQ(card.rfind("---\nlicense: apache-2.0\nlibrary_name: transformers\n", 0), 0u) << card;
  EXPECT_CONTAINS(card, "# tiny-test");
  ASSERT_TRUE(params > 1000 && params < 1000000);
  EXPECT_CONTAINS(card, fmt::format("| parameters | {},{:03d} (", params / 1000, params % 1000));
  EXPECT_CONTAINS(card, "| layout | tp 2 x pp 2 x dp 1, zero 0 |");
  EXPECT_CONTAINS(card, "| tokens | 1,234,567 (1.23M) |");
  EXPECT_CONTAINS(card, "AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)");
}

TEST(WriteHfRelease, TiedSingleFileF32IsExact) {
  ScratchDir scratch;
  const ModelConfig config = tiny_config(/*tied=*/true);
  const auto tensors = tensors_of(config);
  for (const auto& t : tensors) EXPECT_NE(t.name, "lm_head.weight");
  RecordingFiller rec;
  ReleaseInfo info;
  info.dtype = DType::F32;
  const fs::path dir = scratch.path / "out";
  fs::create_directories(dir);  // an empty directory is taken over
  write_hf_release(config, tensors, rec.filler(), info, (dir.string() + "/"));
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  SafetensorsReader reader((dir / "model.safetensors").string());
  EXPECT_EQ(reader.find("lm_head.weight"), nullptr);
  EXPECT_EQ(reader.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo* t = reader.find(tensors[i].name);
    std::vector<float> v(size_t(t->numel()));
    std::memcpy(v.data(), reader.data(*t), v.size() * 4);
    for (int64_t k = 0; k < t->numel(); k += 7) ASSERT_EQ(v[size_t(k)], value_at(i, k));
  }
  EXPECT_EQ(json::parse(read_text(dir / "config.json"))["dtype"], "float32");
  EXPECT_EQ(json::parse(read_text(dir / "config.json"))["tie_word_embeddings"], true);
  expect_sha256sums(dir);
  const std::string card = read_text(dir / "README.md");
  EXPECT_CONTAINS(card, "license: other\nlicense_name: \"not-stated\"");
  EXPECT_CONTAINS(card, "tied (lm_head shares embed_tokens)");
}

TEST(WriteHfRelease, TokenizerAndDatasets) {
  ScratchDir scratch;
  ModelConfig config = tiny_config(false);
  config.vocab_size = 1208;  // genesis-bpe.json has 1202 ids: [PAD] 0, [BOS] 1, [|endofturn|] 2
  const std::string tokenizer = std::string(EXATRAIN_SOURCE_DIR) + "/tests/parity/tokenizer/genesis-bpe.json";

  DatasetManifest m;
  m.name = "kjv-genesis";
  m.license = "CC0-1.0";
  m.source = "King James Bible | Genesis";
  m.total_tokens = 48213;
  m.total_documents = 50;
  m.inputs.push_back({"data/corpora/kjv-genesis.txt", std::string(64, 'a'), 1000, 50});
  const fs::path data = scratch.path / "data";
  fs::create_directories(data);
  write_manifest(data.string(), m);

  ReleaseInfo info;
  info.tokenizer_json = tokenizer;
  info.dataset_dirs = {data.string()};
  info.license = "Apache-2.0 AND CC0-1.0";
  RecordingFiller rec;
  const fs::path dir = scratch.path / "release";
  write_hf_release(config, tensors_of(config), rec.filler(), info, dir.string());

  EXPECT_EQ(read_text(dir / "tokenizer.json"), read_text(tokenizer));
  const json tc = json::parse(read_text(dir / "tokenizer_config.json"));
  EXPECT_EQ(tc["bos_token"], "[BOS]");
  EXPECT_EQ(tc["eos_token"], "[|endofturn|]");
  EXPECT_EQ(tc["pad_token"], "[PAD]");
  EXPECT_FALSE(tc.contains("unk_token"));
  EXPECT_EQ(tc["chat_template"], read_text(std::string(EXATRAIN_SOURCE_DIR) + "/data/chat/exaone4_chat_template.jinja"));
  EXPECT_EQ(tc["added_tokens_decoder"]["1201"]["normalized"], true);  // flags as tokenizer.json has them
  EXPECT_EQ(tc["added_tokens_decoder"]["1200"]["special"], false);
  EXPECT_EQ(tc["model_max_length"], config.max_position_embeddings);
  expect_sha256sums(dir);

  const std::string card = read_text(dir / "README.md");
  EXPECT_CONTAINS(card, "license: other\nlicense_name: \"Apache-2.0 AND CC0-1.0\"");
  EXPECT_CONTAINS(card, "| kjv-genesis | King James Bible \\| Genesis | CC0-1.0 | 48,213 | 50 | `" +
                            sha256_file_hex((data / kManifestFile).string()) + "` |");
  EXPECT_CONTAINS(card, "sha256 `" + std::string(64, 'a') + "`");
  EXPECT_CONTAINS(card, "apply_chat_template(messages, add_generation_prompt=True");
  EXPECT_CONTAINS(card, "bos `[BOS]` (1), eos `[\\|endofturn\\|]` (2)");  // '|' escaped inside the table

  // Token ids that name ordinary tokens (a preset's ids next to a trained tokenizer) are refused.
  config.eos_token_id = 300;
  expect_error([&] { write_hf_release(config, tensors_of(config), rec.filler(), info, (scratch.path / "r2").string()); },
               {"eos_token_id 300", "ordinary token", "genesis-bpe.json"});
  config.eos_token_id = 2;
  config.vocab_size = 1000;
  expect_error([&] { write_hf_release(config, tensors_of(config), rec.filler(), info, (scratch.path / "r3").string()); },
               {"1202 ids", "vocab_size is 1000"});
  EXPECT_FALSE(fs::exists(scratch.path / "r2"));
  EXPECT_FALSE(fs::exists(scratch.path / "r3.tmp"));
}

TEST(WriteHfRelease, FailuresLeaveNoDirectory) {
  ScratchDir scratch;
  const ModelConfig config = tiny_config(false);
  const auto tensors = tensors_of(config);
  ReleaseInfo info;
  const fs::path dir = scratch.path / "release";

  // A filler failing half-way (a broken checkpoint): neither DIR nor DIR.tmp remains.
  size_t calls = 0;
  TensorFiller failing = [&](size_t index, std::span<float> out) {
    ++calls;
    if (index == 5) fail("checkpoint piece {} is broken", index);
    std::fill(out.begin(), out.end(), 0.5f);
  };
  expect_error([&] { write_hf_release(config, tensors, failing, info, dir.string()); }, {"piece 5 is broken"});
  EXPECT_EQ(calls, 6u);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(fs::exists(scratch.path / "release.tmp"));

  // A non-finite weight is not released.
  TensorFiller nan = [](size_t index, std::span<float> out) {
    std::fill(out.begin(), out.end(), 0.5f);
    if (index == 3) out[2] = std::nanf("");
  };
  expect_error([&] { write_hf_release(config, tensors, nan, info, dir.string()); }, {"non-finite", tensors[3].name});
  EXPECT_FALSE(fs::exists(dir));

  // Weights bound to the wrong names (gate and up have the same shape) are refused before writing.
  auto swapped = tensors;
  size_t gate = 0;
  while (swapped[gate].name != "model.layers.0.mlp.gate_proj.weight") ++gate;
  ASSERT_EQ(swapped[gate + 1].name, "model.layers.0.mlp.up_proj.weight");
  std::swap(swapped[gate].name, swapped[gate + 1].name);
  RecordingFiller rec;
  expect_error([&] { write_hf_release(config, swapped, rec.filler(), info, dir.string()); },
               {fmt::format("tensor {} is 'model.layers.0.mlp.up_proj.weight'", gate), "has 'model.layers.0.mlp.gate_proj"});
  EXPECT_TRUE(rec.calls.empty());
  auto with_head = tensors_of(tiny_config(true));
  with_head.push_back({"lm_head.weight", {40, 16}});
  expect_error([&] { write_hf_release(tiny_config(true), with_head, rec.filler(), info, dir.string()); },
               {"lm_head.weight", "tied"});

  // A non-empty DIR is never written into; it stays as it was.
  fs::create_directories(dir);
  std::ofstream(dir / "keep.txt") << "mine";
  expect_error([&] { write_hf_release(config, tensors, rec.filler(), info, dir.string()); },
               {dir.string(), "not empty"});
  EXPECT_EQ(read_text(dir / "keep.txt"), "mine");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);

  // An output below a regular file: one message naming the path.
  std::ofstream(scratch.path / "file") << "x";
  expect_error([&] { write_hf_release(config, tensors, rec.filler(), info, (scratch.path / "file" / "out").string()); },
               {"cannot create directory", (scratch.path / "file").string()});

  // A DIR.tmp left by an interrupted export is replaced.
  const fs::path other = scratch.path / "other";
  fs::create_directories(scratch.path / "other.tmp");
  std::ofstream(scratch.path / "other.tmp" / "model-00001-of-00009.safetensors") << "partial";
  write_hf_release(config, tensors, rec.filler(), info, other.string());
  EXPECT_FALSE(fs::exists(scratch.path / "other.tmp"));
  EXPECT_FALSE(fs::exists(other / "model-00001-of-00009.safetensors"));
  expect_sha256sums(other);
}

TEST(WriteHfRelease, WriteErrorIsOneMessageNamingTheFile) {
  // A file-size limit stands in for a full disk: write(2) fails (EFBIG) part-way through a shard.
  ScratchDir scratch;
  const ModelConfig config = tiny_config(false);
  ReleaseInfo info;
  info.dtype = DType::F32;
  RecordingFiller rec;
  const fs::path dir = scratch.path / "release";
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message = "<no error>";
  try {
    write_hf_release(config, tensors_of(config), rec.filler(), info, dir.string());
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_CONTAINS(message, (scratch.path / "release.tmp" / "model.safetensors").string() + ": cannot write");
  EXPECT_CONTAINS(message, "File too large");
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(fs::exists(scratch.path / "release.tmp"));
}

}  // namespace
}  // namespace exatrain
