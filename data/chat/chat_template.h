// Chat data for fine-tuning: a conversation ({"messages": [...]}, one JSON object per JSONL line)
// rendered with the EXAONE-4 chat template into token ids and a loss mask that is 1 exactly on
// the assistant's tokens.
//
// The rendering is the one of data/chat/exaone4_chat_template.jinja (which reproduces the
// EXAONE-4.0 models' template; see data/chat/NOTICE), character for character:
//
//   [|system|]\nCONTENT[|endofturn|]\n                       (user turns alike)
//   [|assistant|]\n<think>\n\n</think>\n\nANSWER[|endofturn|]\n
//   [|tool|]\n<tool_result>{"result": "..."}</tool_result>[|endofturn|]\n
//
// The loss mask covers each assistant message from the first token after its "[|assistant|]\n"
// through its "[|endofturn|]": the (empty or kept) think block, the answer, the tool calls and the
// end of turn. Role markers, system, user and tool turns and the newline after each
// [|endofturn|] are context only. tests/parity/check_chat.py holds ids and mask to transformers'
// apply_chat_template with that Jinja file. docs/data.md has the JSONL schema.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exatrain {

struct ChatToolCall {
  std::string name;
  std::string arguments_json;  // the arguments as Python's json.dumps(ensure_ascii=False) writes them
};

struct ChatMessage {
  std::string role;     // "system", "user", "assistant" or "tool"
  std::string content;  // an assistant message with tool calls may have none ("")
  std::optional<std::string> reasoning_content;  // assistant only; overrides <think>...</think> in content
  std::vector<ChatToolCall> tool_calls;          // assistant only
};

using Conversation = std::vector<ChatMessage>;

struct ChatTemplateOptions {
  // The template's skip_think: true drops every assistant message's reasoning (an empty think
  // block stands in its place); false keeps it for the conversation's last message only.
  bool skip_think = true;
  // The template's add_generation_prompt: end with "[|assistant|]\n" and, unless
  // enable_thinking, an empty think block (the model answers without reasoning).
  bool add_generation_prompt = false;
  bool enable_thinking = false;
};

// The template's text and where the assistant's output lies in it.
struct RenderedChat {
  std::string text;
  // [begin, end) byte ranges of `text`: each assistant message after its "[|assistant|]\n",
  // through its "[|endofturn|]". Every range starts with "<think>" or "[|endofturn|]".
  std::vector<std::pair<size_t, size_t>> assistant_spans;
};

// Parses one JSONL record {"messages": [{"role": ..., "content": ...}, ...]}. Messages may also
// carry "reasoning_content" (a string) and, for the assistant, "tool_calls" ([{"function":
// {"name": ..., "arguments": ...}}] or [{"name": ..., "arguments"|"parameters": ...}]); other
// fields are ignored, as the template ignores them. Throws Error saying what is wrong and in
// which message ("message 3: unknown role 'bot' (expected system, user, assistant or tool)").
Conversation parse_chat_record(std::string_view json);

// Renders `messages` as the template does (a generation prompt only with
// options.add_generation_prompt). Throws Error for an
// unknown role, an empty conversation, or text that contains a turn marker ([|system|],
// [|user|], [|assistant|], [|tool|], [|endofturn|]): the tokenizer would read it as structure.
RenderedChat render_chat(const Conversation& messages, const ChatTemplateOptions& options = {});

struct ChatTokens {
  std::vector<uint32_t> ids;
  std::vector<uint8_t> loss_mask;  // per id: 1 inside an assistant span, else 0
  uint64_t masked_tokens() const;  // ids with mask 1
};

// `encode` maps text to ids without adding special tokens (Tokenizer::encode).
using ChatEncodeFn = std::function<std::vector<uint32_t>(std::string_view)>;

// Ids of rendered.text (exactly encode(rendered.text)) with the loss mask. The text is encoded
// piece by piece, cut at the span edges; every edge touches a special token, where the tokenizer
// splits anyway, and the pieces' ids are checked against the whole text's ids, so a tokenizer
// without the EXAONE special tokens fails loudly instead of giving a wrong mask.
ChatTokens encode_chat(const RenderedChat& rendered, const ChatEncodeFn& encode);

// The special tokens the rendering relies on; the tokenizer must have each as one added token.
const std::vector<std::string>& chat_special_tokens();
inline constexpr const char* kChatEndOfTurn = "[|endofturn|]";

// Python's json.dumps(value, ensure_ascii=False) of a JSON text (used for tool arguments and tool
// results; the template renders them with `tojson`): ", " and ": " separators, keys in input
// order, floats as Python's repr. Throws Error if `json` does not parse.
std::string python_json_dumps(std::string_view json);
// Python's json.dumps of one string.
std::string python_json_string(std::string_view text);

}  // namespace exatrain
