// Config loading: presets, merging, --set, and every class of bad config with its message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/expect_error.h"
#include "trainer/core/config.h"
#include "trainer/core/config_tree.h"
#include "trainer/core/error.h"

namespace exatrain {
namespace {

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The message of the Error that `fn` throws ("" if none).
template <class F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, PresetMergedWithRunFileAndOverrides) {
  const auto path = write_file("run.yaml", "model:\n  preset: tiny\n  num_layers: 8\ntrain:\n  steps: 5\n");
  RunConfig c = load_run_config(path, {"train.seq_len=64", "optimizer.lr=1e-3"});
  EXPECT_EQ(c.model.hidden_size, 128);  // from the preset
  EXPECT_EQ(c.model.num_layers, 8);     // run file wins over the preset
  EXPECT_EQ(c.train.steps, 5);
  EXPECT_EQ(c.train.seq_len, 64);  // --set
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
  EXPECT_EQ(c.locations.where("model.num_layers"), path + ":3:15: model.num_layers");
  EXPECT_EQ(c.locations.where("train.seq_len"), "--set train.seq_len=64: train.seq_len");
}

TEST(Config, ResolvedYamlRoundTrips) {
  const auto path = write_file("rt.yaml", "model: {preset: small}\ntrain: {precision: bf16, recompute: full}\n");
  const std::string yaml = resolved_yaml(load_run_config(path));
  const auto again = write_file("rt2.yaml", yaml);
  EXPECT_EQ(resolved_yaml(load_run_config(again)), yaml);
}

TEST(Config, DatasetListAndLayerList) {
  const auto dir = testing::TempDir();
  const auto path = write_file("ds.yaml",
                               "model: {preset: tiny}\n"
                               "parallel: {pp: 2, pipeline_layers: [1, 3]}\n"
                               "data:\n"
                               "  tokenizer: tok.json\n"
                               "  datasets:\n"
                               "    - path: a\n"
                               "      weight: 3\n"
                               "      validation_sequences: 4\n"
                               "    - {path: /abs/b, validation_fraction: 0.1}\n");
  RunConfig c = load_run_config(path);
  ASSERT_EQ(c.data.datasets.size(), 2u);
  EXPECT_EQ(c.data.datasets[0].path, std::filesystem::path(dir + "/a").lexically_normal().string());
  EXPECT_DOUBLE_EQ(c.data.datasets[0].weight, 3.0);
  EXPECT_EQ(c.data.datasets[0].validation_sequences, 4);
  EXPECT_EQ(c.data.datasets[1].path, "/abs/b");
  EXPECT_DOUBLE_EQ(c.data.datasets[1].weight, 1.0);  // default
  EXPECT_DOUBLE_EQ(c.data.datasets[1].validation_fraction, 0.1);
  EXPECT_EQ(c.data.tokenizer, std::filesystem::path(dir + "/tok.json").lexically_normal().string());
  EXPECT_EQ(c.parallel.pipeline_layers, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(c.locations.where("data.datasets[0].weight"), path + ":7:15: data.datasets[0].weight");
  // The resolved config reads back to the same config.
  const std::string yaml = resolved_yaml(c);
  EXPECT_EQ(resolved_yaml(load_run_config(write_file("ds2.yaml", yaml))), yaml);
}

TEST(Config, DatasetListErrors) {
  auto err = [](const std::string& name, const std::string& text) {
    const auto p = write_file(name, "model: {preset: tiny}\n" + text);
    return error_of([&] { load_run_config(p); });
  };
  EXPECT_NE(err("l1.yaml", "data: {datasets: [{path: a, wieght: 2}]}\n").find(
                "unknown key 'data.datasets[0].wieght' (did you mean 'weight'?)"),
            std::string::npos);
  EXPECT_NE(err("l2.yaml", "data: {datasets: a}\n").find("data.datasets: expected a list of sections"),
            std::string::npos);
  EXPECT_NE(err("l3.yaml", "data: {datasets: [a]}\n").find("data.datasets[0]: expected a section"),
            std::string::npos);
  EXPECT_NE(err("l4.yaml", "data: {datasets: [{path: a, weight: -1}]}\n").find("data.datasets[0].weight: expected a number >= 0"),
            std::string::npos);
  // weight 0 is evaluation only (as eval_only: true); something must be left to train on
  EXPECT_NE(err("l4b.yaml", "data: {datasets: [{path: a, weight: 0}, {path: b, eval_only: true}]}\n")
                .find("data.datasets: every dataset is evaluation-only (weight 0 or eval_only); at least one must be "
                      "trained on"),
            std::string::npos);
  EXPECT_NE(err("l4c.yaml", "data: {path: x.txt, packing: false}\n").find("data.packing: false needs data.datasets"),
            std::string::npos);
  EXPECT_NE(err("l5.yaml", "data: {path: x.txt, datasets: [{path: a}]}\n").find("not both"), std::string::npos);
  EXPECT_NE(err("l6.yaml", "data: {datasets: [{weight: 2}]}\n").find("data.datasets[0].path (default): is not set"),
            std::string::npos);
  EXPECT_NE(err("l7.yaml", "parallel: {pp: 2, pipeline_layers: [1, 2]}\n").find("1 + 2 = 3 layers, but the model has 4"),
            std::string::npos);
  EXPECT_NE(err("l8.yaml", "parallel: {pp: 3, pipeline_layers: [2, 2]}\n").find("lists 2 stages but pp is 3"),
            std::string::npos);
  EXPECT_NE(err("l9.yaml", "parallel: {pp: 2, pipeline_layers: [4, 0]}\n").find("pipeline_layers[1]: expected an integer >= 1, found 0"),
            std::string::npos);
  EXPECT_NE(err("l10.yaml", "parallel: {pp: 2, pipeline_layers: [2, two]}\n").find("pipeline_layers[1]: expected an integer, found 'two'"),
            std::string::npos);
  EXPECT_NE(err("l11.yaml", "parallel: {tp: 2, sequence_parallel: true}\ntrain: {seq_len: 63}\n").find(
                "63 is not divisible by tp (2)"),
            std::string::npos);
  EXPECT_NE(err("l12.yaml", "data: {path: x.txt}\ntrain: {eval_every: 5}\n").find("validation needs data.datasets"),
            std::string::npos);
}

TEST(Config, UnknownKeySuggestsClosest) {
  const auto path = write_file("typo.yaml", "model: {preset: tiny}\ntrain:\n  stpes: 5\n");
  const std::string msg = error_of([&] { load_run_config(path); });
  EXPECT_NE(msg.find(path + ":3:3: unknown key 'train.stpes' (did you mean 'steps'?)"), std::string::npos) << msg;
}

TEST(Config, WrongTypeAndRange) {
  auto msg = error_of([&] { load_run_config(write_file("t1.yaml", "model: {preset: tiny}\ntrain: {steps: many}\n")); });
  EXPECT_NE(msg.find(":2:16: train.steps: expected an integer, found 'many'"), std::string::npos) << msg;
  msg = error_of([&] { load_run_config(write_file("t2.yaml", "model: {preset: tiny}\noptimizer: {lr: -1}\n")); });
  EXPECT_NE(msg.find("optimizer.lr: expected a number > 0, found -1"), std::string::npos) << msg;
  msg = error_of([&] { load_run_config(write_file("t3.yaml", "model: {preset: tiny}\ntrain: {precision: fp16}\n")); });
  EXPECT_NE(msg.find("expected one of fp32, bf16, found 'fp16'"), std::string::npos) << msg;
  msg = error_of([&] { load_run_config(write_file("t4.yaml", "model: {preset: tiny}\ntrain: {steps: \"5\"}\n")); });
  EXPECT_NE(msg.find("expected an integer, found the string '5'"), std::string::npos) << msg;
}

TEST(Config, InconsistentModel) {
  const auto path = write_file("gqa.yaml", "model:\n  preset: tiny\n  num_kv_heads: 3\n");
  auto msg = error_of([&] { load_run_config(path); });
  EXPECT_NE(msg.find(path + ":3:17: model.num_kv_heads: num_heads (4) must be a multiple of num_kv_heads (3)"),
            std::string::npos) << msg;
  msg = error_of([&] { load_run_config(path, {"model.num_kv_heads=2", "model.layer_types=[full_attention]"}); });
  EXPECT_NE(msg.find("model.layer_types: has 1 entries but num_layers is 4"), std::string::npos) << msg;
  msg = error_of([&] { load_run_config(path, {"model.num_kv_heads=2", "train.global_batch=6", "train.micro_batch=4"}); });
  EXPECT_NE(msg.find("train.global_batch: 6 is not a multiple of train.micro_batch (4)"), std::string::npos) << msg;
}

TEST(Config, InvalidYamlNamesLine) {
  const auto path = write_file("bad.yaml", "model: {preset: tiny\ntrain: [1, 2\n");
  const std::string msg = error_of([&] { load_run_config(path); });
  EXPECT_NE(msg.find(path + ":"), std::string::npos);
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;
}

// yaml-cpp 0.7's node graph crashed (SIGSEGV) on a self-referencing alias and expanded an alias
// "billion laughs" to gigabytes; anchors and aliases are refused before any graph is built.
TEST(Config, AnchorsAndAliasesRefused) {
  expect_error([] { parse_yaml("model: {preset: tiny}\nx: &a [*a]\n", "self.yaml"); },
               {"self.yaml:2:4: YAML anchors (&a) are not supported in a config"});
  std::string laughs = "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n";
  for (char c = 'b'; c <= 'z'; ++c)
    laughs += fmt::format("{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", c, c, char(c - 1), char(c - 1),
                          char(c - 1), char(c - 1), char(c - 1), char(c - 1), char(c - 1), char(c - 1), char(c - 1));
  expect_error([&] { parse_yaml(laughs, "laughs.yaml"); }, {"laughs.yaml:1:4: YAML anchors (&a)"});
  expect_error([] { parse_yaml("train: {steps: *n}\n", "alias.yaml"); },
               {"alias.yaml:1:16: YAML aliases (*name) are not supported in a config"});
  expect_error([] { parse_yaml("train:\n  steps: !!int &n 5\n", "tagged.yaml"); }, {"tagged.yaml:2:10: YAML anchors (&n)"});
  // & and * inside quoted strings, plain scalars and comments are text, not anchors.
  ConfigNode n = parse_yaml("log: {sample_prompt: \"&a *b\"}  # &c *d\nx: 'a&b*c'\ny: a&b*\n", "ok.yaml");
  EXPECT_EQ(n.find("log")->find("sample_prompt")->scalar, "&a *b");
  EXPECT_TRUE(n.find("log")->find("sample_prompt")->quoted);
  EXPECT_EQ(n.find("x")->scalar, "a&b*c");
  EXPECT_EQ(n.find("y")->scalar, "a&b*");
}

// yaml-cpp 0.7 accepted a quoted string left open when the file ends after a line break: it
// swallowed every key below it and the run used defaults. PyYAML names where the quote opened.
TEST(Config, UnterminatedQuoteNamesWhereItOpened) {
  const auto path = write_file("quote.yaml", "model: {preset: tiny}\nlog:\n  sample_prompt: \"Hello\ntrain:\n  steps: 9\n");
  expect_error([&] { load_run_config(path); },
               {path + ":3:18: invalid YAML: the double-quoted string that opens here is never closed", "add the closing \""});
  expect_error([] { parse_yaml("a: 'it''s\nb: 1\n", "single.yaml"); },
               {"single.yaml:1:4: invalid YAML: the single-quoted string"});
  expect_error([] { parse_yaml("a: \"x\\\"\nb: 1\n", "escaped.yaml"); }, {"escaped.yaml:1:4:"});
  expect_error([] { parse_yaml("a: !!str \"x\nb: 1\n", "tag.yaml"); }, {"tag.yaml:1:4:"});
  expect_error([] { parse_yaml("\"x\n", "--set a=\"x"); }, {"--set a=\"x:1:1: invalid YAML", "swallows the rest of the value"});
  // Closed strings, including escaped quotes, '' and a string over two lines, and a block scalar
  // running to the end of the file, are all fine.
  ConfigNode n = parse_yaml("a: \"x\\\"y\"\nb: 'it''s'\nc: \"one\n  two\"\nd: |\n  text\n", "ok.yaml");
  EXPECT_EQ(n.find("a")->scalar, "x\"y");
  EXPECT_EQ(n.find("b")->scalar, "it's");
  EXPECT_EQ(n.find("c")->scalar, "one two");
  EXPECT_EQ(n.find("d")->scalar, "text\n");
  // A byte-order mark shifts yaml-cpp's positions; the check still finds the quote.
  EXPECT_EQ(parse_yaml("\xEF\xBB\xBF" "a: \"x\"\n", "bom.yaml").find("a")->scalar, "x");
  expect_error([] { parse_yaml("\xEF\xBB\xBF" "a: \"x\nb: 1\n", "bom.yaml"); }, {"bom.yaml:1:4:"});
}

TEST(Config, UnknownPresetSuggests) {
  const auto path = write_file("preset.yaml", "model: {preset: tinny}\n");
  const std::string msg = error_of([&] { load_run_config(path); });
  EXPECT_NE(msg.find("unknown model preset 'tinny' (did you mean 'tiny'?)"), std::string::npos) << msg;
}

TEST(Config, LayerKindsFollowTransformers) {
  ModelConfig m = load_model_preset("exaone4-32b");
  auto kinds = m.layer_kinds();
  ASSERT_EQ(kinds.size(), 64u);
  for (size_t i = 0; i < kinds.size(); ++i)
    EXPECT_EQ(kinds[i], i % 4 == 3 ? LayerKind::Full : LayerKind::Sliding) << i;
  EXPECT_TRUE(m.layer_uses_rope(0));
  EXPECT_FALSE(m.layer_uses_rope(3));  // global layers of hybrid models: no positional encoding
  ModelConfig dense = load_model_preset("exaone4-1.2b");
  for (int64_t i = 0; i < dense.num_layers; ++i) EXPECT_TRUE(dense.layer_uses_rope(i));
}

TEST(Config, ClosestMatch) {
  EXPECT_EQ(closest_match("stpes", {"steps", "seed", "seq_len"}), "steps");
  EXPECT_EQ(closest_match("zzzzzz", {"steps", "seed"}), "");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
}

}  // namespace
}  // namespace exatrain
