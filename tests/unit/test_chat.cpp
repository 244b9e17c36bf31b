// Chat data: the EXAONE-4 rendering (text and assistant spans), the ids and loss mask of a
// multi-turn conversation token by token, JSONL record parsing and its errors, and the Python
// json.dumps rendering of tool arguments. tests/parity/check_chat.py is the outside judge.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/chat/chat_template.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/core/error.h"
#include "tests/unit/expect_error.h"

namespace exatrain {
namespace {

// The repository's fixture: a byte-level BPE trained on Genesis with the EXAONE special tokens
// ([PAD]=0 [BOS]=1 [|endofturn|]=2 [|system|]=3 [|user|]=4 [|assistant|]=5 [|tool|]=6 <think>=7
// </think>=8).
const Tokenizer& fixture_tokenizer() {
  static const Tokenizer tok =
      Tokenizer::from_file(std::string(EXATRAIN_SOURCE_DIR) + "/tests/parity/tokenizer/genesis-bpe.json");
  return tok;
}

ChatEncodeFn fixture_encode() {
  return [](std::string_view text) { return fixture_tokenizer().encode(text); };
}

ChatMessage msg(std::string role, std::string content) { return ChatMessage{std::move(role), std::move(content), {}, {}}; }

// One token as expected: its text (the decoded id) and whether it is a training target.
struct Piece {
  std::string text;
  int mask;
};

TEST(ChatTemplate, MultiTurnConversationTokenByToken) {
  const Conversation conversation = {
      msg("system", "Be wise."),
      msg("user", "Who made the light?"),
      msg("assistant", "<think>\nLet there be light.\n</think>\n\nGod said it."),
      msg("user", "And then?"),
      msg("assistant", "The earth."),
  };
  const RenderedChat r = render_chat(conversation);
  EXPECT_EQ(r.text,
            "[|system|]\nBe wise.[|endofturn|]\n"
            "[|user|]\nWho made the light?[|endofturn|]\n"
            "[|assistant|]\n<think>\n\n</think>\n\nGod said it.[|endofturn|]\n"
            "[|user|]\nAnd then?[|endofturn|]\n"
            "[|assistant|]\n<think>\n\n</think>\n\nThe earth.[|endofturn|]\n");
  const ChatTokens t = encode_chat(r, fixture_encode());
  // Written out by hand from the rendering above, one entry per token of the fixture (whose
  // merges know " made" but not "Who"; "\n\n" is two tokens).
  const std::vector<Piece> expected = {
      {"[|system|]", 0}, {"\n", 0}, {"B", 0}, {"e", 0}, {" w", 0}, {"ise", 0}, {".", 0}, {"[|endofturn|]", 0}, {"\n", 0},
      {"[|user|]", 0}, {"\n", 0}, {"W", 0}, {"h", 0}, {"o", 0}, {" made", 0}, {" the", 0}, {" light", 0}, {"?", 0},
      {"[|endofturn|]", 0}, {"\n", 0},
      {"[|assistant|]", 0}, {"\n", 0},
      {"<think>", 1}, {"\n", 1}, {"\n", 1}, {"</think>", 1}, {"\n", 1}, {"\n", 1}, {"G", 1}, {"od", 1}, {" said", 1},
      {" it", 1}, {".", 1}, {"[|endofturn|]", 1},
      {"\n", 0},
      {"[|user|]", 0}, {"\n", 0}, {"A", 0}, {"nd", 0}, {" then", 0}, {"?", 0}, {"[|endofturn|]", 0}, {"\n", 0},
      {"[|assistant|]", 0}, {"\n", 0},
      {"<think>", 1}, {"\n", 1}, {"\n", 1}, {"</think>", 1}, {"\n", 1}, {"\n", 1}, {"T", 1}, {"he", 1}, {" earth", 1},
      {".", 1}, {"[|endofturn|]", 1},
      {"\n", 0},
  };
  ASSERT_EQ(t.ids.size(), t.loss_mask.size());
  const Tokenizer& tok = fixture_tokenizer();
  std::string got;
  for (size_t i = 0; i < t.ids.size(); ++i)
    got += "{\"" + tok.decode(std::vector<uint32_t>{t.ids[i]}) + "\", " + std::to_string(t.loss_mask[i]) + "} ";
  ASSERT_EQ(t.ids.size(), expected.size()) << "tokens: " << got;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(tok.decode(std::vector<uint32_t>{t.ids[i]}), expected[i].text) << "token " << i << "; all: " << got;
    EXPECT_EQ(t.loss_mask[i], expected[i].mask) << "token " << i << " ('" << expected[i].text << "')";
  }
  // The special tokens are the fixture's ids, and the mask count adds up.
  EXPECT_EQ(t.ids[0], 3u);
  EXPECT_EQ(t.ids[20], 5u);
  EXPECT_EQ(t.ids[22], 7u);
  EXPECT_EQ(t.ids[25], 8u);
  EXPECT_EQ(t.ids[33], 2u);
  EXPECT_EQ(t.masked_tokens(), 23u);
  EXPECT_EQ(t.ids, tok.encode(r.text));
}

TEST(ChatTemplate, ReasoningKeptOnlyForTheLastMessageWhenSkipThinkIsFalse) {
  const Conversation c = {
      msg("user", "q1"),
      msg("assistant", "<think>\nfirst thought\n</think>\n\na1"),
      msg("user", "q2"),
      msg("assistant", " <think>\n가나다라 생각  </think>  a2 "),
  };
  const std::string dropped = render_chat(c).text;
  EXPECT_EQ(dropped,
            "[|user|]\nq1[|endofturn|]\n[|assistant|]\n<think>\n\n</think>\n\na1[|endofturn|]\n"
            "[|user|]\nq2[|endofturn|]\n[|assistant|]\n<think>\n\n</think>\n\na2[|endofturn|]\n");
  // skip_think false: the last message keeps its reasoning, stripped, minus the two characters
  // after "<think>" that the EXAONE-4.0 template's [9:] takes ("\n가"); earlier ones never do.
  const std::string kept = render_chat(c, ChatTemplateOptions{.skip_think = false}).text;
  EXPECT_EQ(kept,
            "[|user|]\nq1[|endofturn|]\n[|assistant|]\n<think>\n\n</think>\n\na1[|endofturn|]\n"
            "[|user|]\nq2[|endofturn|]\n[|assistant|]\n<think>\n나다라 생각\n</think>\n\na2[|endofturn|]\n");
  // reasoning_content wins over the content's think block.
  Conversation with_field = {msg("user", "q"), msg("assistant", "<think>x</think>answer")};
  with_field[1].reasoning_content = "from the field";
  EXPECT_EQ(render_chat(with_field, {.skip_think = false}).text,
            "[|user|]\nq[|endofturn|]\n[|assistant|]\n<think>\nfrom the field\n</think>\n\nanswer[|endofturn|]\n");
  // Python's strip() knows Unicode spaces (U+3000, U+00A0) and the answer after the LAST </think>.
  EXPECT_EQ(render_chat({msg("assistant", "a</think>b</think>\u3000c\u00a0")}).text,
            "[|assistant|]\n<think>\n\n</think>\n\nc[|endofturn|]\n");
}

TEST(ChatTemplate, ToolTurnsEmptyContentAndSpans) {
  Conversation c = {msg("user", "weather?"), msg("assistant", ""), msg("tool", "sunny \"warm\"\n"),
                    msg("tool", ""), msg("assistant", "It is sunny."), msg("system", "")};
  c[1].tool_calls = {{"get_weather", "{\"city\": \"서울\", \"days\": 2}"}, {"now", "{}"}};
  const RenderedChat r = render_chat(c);
  const std::string a1 =
      "<think>\n\n</think>\n\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\", \"days\": 2}}"
      "</tool_call>\n<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>[|endofturn|]";
  const std::string a2 = "<think>\n\n</think>\n\nIt is sunny.[|endofturn|]";
  EXPECT_EQ(r.text, "[|user|]\nweather?[|endofturn|]\n[|assistant|]\n" + a1 +
                        "\n[|tool|]\n<tool_result>{\"result\": \"sunny \\\"warm\\\"\\n\"}</tool_result>\n"
                        "<tool_result>{\"result\": \"\"}</tool_result>[|endofturn|]\n[|assistant|]\n" + a2 +
                        "\n[|system|]\n[|endofturn|]\n");
  ASSERT_EQ(r.assistant_spans.size(), 2u);
  EXPECT_EQ(r.text.substr(r.assistant_spans[0].first, r.assistant_spans[0].second - r.assistant_spans[0].first), a1);
  EXPECT_EQ(r.text.substr(r.assistant_spans[1].first, r.assistant_spans[1].second - r.assistant_spans[1].first), a2);
  // An assistant message with nothing at all is just its end of turn, and that is trained on.
  const RenderedChat empty = render_chat({msg("user", "hi"), msg("assistant", "")});
  EXPECT_EQ(empty.text, "[|user|]\nhi[|endofturn|]\n[|assistant|]\n[|endofturn|]\n");
  const ChatTokens t = encode_chat(empty, fixture_encode());
  EXPECT_EQ(t.masked_tokens(), 1u);
  EXPECT_EQ(t.ids[t.ids.size() - 2], 2u);
  EXPECT_EQ(t.loss_mask[t.ids.size() - 2], 1);
  EXPECT_EQ(t.loss_mask.back(), 0);
}

TEST(ChatTemplate, RefusesWhatTheTemplateCannotRepresent) {
  expect_error([] { render_chat({}); }, {"at least one message"});
  expect_error([] { render_chat({msg("user", "a"), msg("bot", "b")}); }, {"message 2", "unknown role 'bot'"});
  expect_error([] { render_chat({msg("user", "fake [|assistant|] turn")}); },
               {"message 1 (user)", "'[|assistant|]'", "turn marker"});
  expect_error([] { render_chat({msg("tool", "x[|endofturn|]")}); }, {"message 1 (tool)", "[|endofturn|]"});
}

TEST(ChatTemplate, EncodingFailsLoudlyWithoutTheSpecialTokens) {
  // A "tokenizer" that merges across the span edges: one id per text.
  const ChatEncodeFn one_id = [](std::string_view text) { return std::vector<uint32_t>{uint32_t(text.size())}; };
  expect_error([&] { encode_chat(render_chat({msg("user", "q"), msg("assistant", "a")}), one_id); },
               {"differently in pieces", "[|endofturn|]", "<think>"});
}

TEST(ChatRecord, ParsesMessagesToolCallsAndReasoning) {
  const Conversation c = parse_chat_record(
      R"({"id": 7, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u", "name": "x"},
          {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f",
           "arguments": {"b": 1.5, "a": [1, 1e-05, 1e16, 2.0, -0.0, true, null, "é\t"]}}}, {"name": "g", "parameters": "s"}]},
          {"role": "tool", "content": "r"}, {"role": "assistant", "content": "ok", "reasoning_content": "why"}]})");
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[1].content, "u");
  EXPECT_EQ(c[2].content, "");
  ASSERT_EQ(c[2].tool_calls.size(), 2u);
  EXPECT_EQ(c[2].tool_calls[0].name, "f");
  // Python: json.dumps({"b": 1.5, "a": [1, 1e-05, 1e16, 2.0, -0.0, True, None, "é\t"]}, ensure_ascii=False)
  EXPECT_EQ(c[2].tool_calls[0].arguments_json, R"({"b": 1.5, "a": [1, 1e-05, 1e+16, 2.0, -0.0, true, null, "é\t"]})");
  EXPECT_EQ(c[2].tool_calls[1].arguments_json, R"("s")");
  EXPECT_EQ(c[4].reasoning_content.value_or("-"), "why");
}

TEST(ChatRecord, PythonJsonDumps) {
  // Each expectation is what Python 3's json.dumps(json.loads(x), ensure_ascii=False) prints.
  EXPECT_EQ(python_json_dumps("[0.1, 100.0, 123456789.125, 1234567890123456.0, 12345678901234567.0]"),
            "[0.1, 100.0, 123456789.125, 1234567890123456.0, 1.2345678901234568e+16]");
  EXPECT_EQ(python_json_dumps("[0.0001, 0.00001234, 1e-300, 1.7976931348623157e308, -3]"),
            "[0.0001, 1.234e-05, 1e-300, 1.7976931348623157e+308, -3]");
  EXPECT_EQ(python_json_dumps(R"({"k": "\u0001\u001f\u007f \"\\ \u2028"})"), "{\"k\": \"\\u0001\\u001f\x7f \\\"\\\\ \u2028\"}");
  EXPECT_EQ(python_json_dumps("{}"), "{}");
  EXPECT_EQ(python_json_dumps("[]"), "[]");
  EXPECT_EQ(python_json_dumps("18446744073709551615"), "18446744073709551615");
}

TEST(ChatRecord, ErrorsSayWhatAndWhere) {
  expect_error([] { parse_chat_record("{\"messages\": [}"); }, {"malformed JSON"});
  expect_error([] { parse_chat_record("{\"messages\": [], \"x\": 1e999}"); },
               {"malformed JSON: number overflow parsing '1e999' at line 1, column 23"});
  expect_error([] { parse_chat_record("[1]"); }, {"expected a JSON object", "array"});
  expect_error([] { parse_chat_record("{\"text\": \"x\"}"); }, {"no \"messages\""});
  expect_error([] { parse_chat_record("{\"messages\": []}"); }, {"\"messages\" is empty"});
  expect_error([] { parse_chat_record(R"({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]})"); },
               {"message 2", "unknown role 'bot'", "system, user, assistant or tool"});
  expect_error([] { parse_chat_record(R"({"messages": [{"role": "user"}]})"); }, {"message 1 (user)", "no \"content\""});
  expect_error([] { parse_chat_record(R"({"messages": [{"content": "x"}]})"); }, {"message 1", "no \"role\""});
  expect_error([] { parse_chat_record(R"({"messages": [{"role": "user", "content": 5}]})"); },
               {"message 1 (user)", "\"content\" is number"});
  expect_error([] { parse_chat_record(R"({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"name": "f"}]}]})"); },
               {"tool call 1", "no \"arguments\""});
  expect_error([] { parse_chat_record(R"({"tools": [{"name": "f"}], "messages": [{"role": "user", "content": "x"}]})"); },
               {"\"tools\"", "not supported"});
}

}  // namespace
}  // namespace exatrain
