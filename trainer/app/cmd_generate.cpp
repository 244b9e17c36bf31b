// exatrain generate (--hf DIR | --checkpoint CKPT) (--prompt TEXT | --prompt-ids "1 2 3") [--chat]
//                   [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S]
//                   [--tokenizer FILE | --byte-level] [--threads N] [--json]
// Continues a prompt with a released model or a training checkpoint. Greedy by default (as
// transformers' generate(do_sample=False)); --chat wraps the prompt as one user turn of the
// EXAONE-4 chat template with the generation prompt; stops at the model's EOS (and, with
// --chat, at the end of the assistant's turn). No KV cache: each token reruns the context.
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <nlohmann/json.hpp>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/hf_io.h"
#include "data/chat/chat_template.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/train/generate.h"
#include "trainer/train/release.h"

namespace exatrain {

namespace {

struct GenerateCliOptions {
  std::string hf_dir, checkpoint, prompt, prompt_ids, tokenizer;
  bool chat = false, byte_level = false, json = false;
  GenerateOptions gen;
  int threads = 0;
};

std::vector<int64_t> parse_ids(const std::string& text, int64_t vocab) {
  std::vector<int64_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(word, &used);
      if (used != word.size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id >= vocab) fail("--prompt-ids: '{}' is not a token id in [0, {})", word, vocab);
    ids.push_back(id);
  }
  if (ids.empty()) fail("--prompt-ids: no token ids given");
  return ids;
}

void run_generate(const GenerateCliOptions& o) {
  if (o.hf_dir.empty() == o.checkpoint.empty()) fail("give exactly one of --hf DIR or --checkpoint CKPT");
  if (o.prompt.empty() == o.prompt_ids.empty()) fail("give exactly one of --prompt TEXT or --prompt-ids \"1 2 3\"");
  if (o.chat && o.prompt.empty()) fail("--chat needs --prompt TEXT (the user's message)");
  if (o.byte_level && !o.tokenizer.empty()) fail("--byte-level and --tokenizer exclude each other");
  set_compute_threads(o.threads);

  std::unique_ptr<Exaone4Model> model;
  std::string tokenizer_path = o.tokenizer;
  if (!o.hf_dir.empty()) {
    model = load_hf_model(o.hf_dir, at::TensorOptions().dtype(at::kFloat));
    if (tokenizer_path.empty() && std::filesystem::exists(o.hf_dir + "/tokenizer.json"))
      tokenizer_path = o.hf_dir + "/tokenizer.json";
  } else {
    CheckpointReader reader(resolve_checkpoint_dir(o.checkpoint));
    RunConfig run;
    model = load_checkpoint_model(reader, &run);
    if (tokenizer_path.empty()) tokenizer_path = run.data.tokenizer;
  }
  const ModelConfig& config = model->config();
  std::optional<Tokenizer> tokenizer;
  if (!o.byte_level && !tokenizer_path.empty()) tokenizer = Tokenizer::from_file(tokenizer_path);
  if (!o.prompt.empty() && !tokenizer && !o.byte_level)
    fail("no tokenizer to encode --prompt: give --tokenizer FILE, --byte-level (a model trained on raw bytes), or "
         "--prompt-ids");

  std::vector<int64_t> prompt;
  if (!o.prompt_ids.empty()) {
    prompt = parse_ids(o.prompt_ids, config.vocab_size);
  } else {
    std::string text = o.prompt;
    if (o.chat) {
      ChatTemplateOptions chat;
      chat.add_generation_prompt = true;
      text = render_chat(Conversation{ChatMessage{"user", o.prompt, std::nullopt, {}}}, chat).text;
    }
    if (tokenizer) {
      for (uint32_t id : tokenizer->encode(text)) prompt.push_back(id);
    } else {
      for (unsigned char c : text) prompt.push_back(c);
    }
  }
  for (int64_t id : prompt)
    if (id >= config.vocab_size)
      fail("the prompt encodes to token {} but the model's vocabulary has {} entries: the tokenizer ({}) does not "
           "belong to this model", id, config.vocab_size, tokenizer ? tokenizer_path : "bytes");

  GenerateOptions g = o.gen;
  if (config.eos_token_id >= 0) g.stop_ids.push_back(config.eos_token_id);
  if (o.chat && tokenizer) {
    const auto end_of_turn = tokenizer->encode(kChatEndOfTurn);
    if (end_of_turn.size() == 1) g.stop_ids.push_back(end_of_turn[0]);
  }
  model->set_requires_grad(false);
  const std::vector<int64_t> out = generate(*model, prompt, g);

  std::string text;
  if (tokenizer) {
    std::vector<uint32_t> ids(out.begin(), out.end());
    text = tokenizer->decode(ids, /*skip_special_tokens=*/true);
  } else if (o.byte_level || !o.prompt.empty()) {
    for (int64_t id : out)
      if (id < 256) text.push_back(static_cast<char>(id));
  }
  if (o.json) {
    std::cout << nlohmann::json{{"prompt_ids", prompt}, {"output_ids", out}, {"text", text},
                                {"stopped", !out.empty() && std::find(g.stop_ids.begin(), g.stop_ids.end(),
                                                                      out.back()) != g.stop_ids.end()}}
                     .dump()
              << "\n";
  } else {
    std::cout << text << "\n";
  }
}

void register_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a released model or a checkpoint");
  static GenerateCliOptions o;
  cmd->add_option("--hf", o.hf_dir, "a Hugging Face directory (config.json, safetensors, tokenizer.json)");
  cmd->add_option("--checkpoint", o.checkpoint, "a checkpoint directory, or a run directory (its latest)");
  cmd->add_option("--prompt", o.prompt, "the text to continue (with --chat: the user's message)");
  cmd->add_option("--prompt-ids", o.prompt_ids, "the prompt as space-separated token ids instead");
  cmd->add_flag("--chat", o.chat, "wrap the prompt in the EXAONE-4 chat template, with the generation prompt");
  cmd->add_option("--max-new-tokens", o.gen.max_new_tokens, "tokens to generate at most")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", o.gen.temperature, "0 = greedy; > 0 samples from softmax(logits / T)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o.gen.top_p, "with --temperature > 0: sample from the smallest set of tokens "
                  "holding this much probability")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o.gen.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--tokenizer", o.tokenizer, "tokenizer.json (default: the HF directory's, or the run's "
                  "data.tokenizer)");
  cmd->add_flag("--byte-level", o.byte_level, "the model was trained on raw bytes (data.format: text, no tokenizer)");
  cmd->add_option("--threads", o.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", o.json, "print {prompt_ids, output_ids, text, stopped}");
  cmd->callback([] { run_generate(o); });
}

CommandRegistration registration("generate", 55, register_generate_command);

}  // namespace

}  // namespace exatrain
