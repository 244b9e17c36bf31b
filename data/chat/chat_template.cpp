#include "data/chat/chat_template.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "trainer/core/error.h"
#include "trainer/core/json_error.h"
#include "trainer/core/utf8.h"

namespace exatrain {

namespace {

using Json = nlohmann::ordered_json;  // keeps keys in input order, as Python's json.loads does

constexpr std::string_view kEmptyThink = "<think>\n\n</think>\n\n";
constexpr std::string_view kEndOfTurn = "[|endofturn|]";
// Strings that would turn into turn structure if they appeared inside a message.
constexpr std::string_view kTurnMarkers[] = {"[|system|]", "[|user|]", "[|assistant|]", "[|tool|]", "[|endofturn|]"};

// ---- Python string semantics on (valid) UTF-8 ------------------------------------------------

// Python's str.isspace().
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip().
std::string python_strip(std::string_view s) {
  size_t begin = 0;
  for (size_t next = 0; begin < s.size() && is_python_space(utf8::next_code_point(s, next = begin));) begin = next;
  size_t end = s.size();
  for (size_t prev = end; end > begin && is_python_space(utf8::previous_code_point(s, prev = end));) end = prev;
  return std::string(s.substr(begin, end - begin));
}

// Python's s[n:] (n counts code points).
std::string python_slice_from(std::string_view s, size_t n) {
  size_t pos = 0;
  for (size_t k = 0; k < n && pos < s.size(); ++k) pos += utf8::sequence_length(static_cast<uint8_t>(s[pos]));
  return std::string(s.substr(std::min(pos, s.size())));
}

// ---- Python's json.dumps(ensure_ascii=False) ---------------------------------------------------

void append_python_json_string(std::string_view text, std::string& out) {
  out += '"';
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += ch;  // ensure_ascii=False: everything else as it is
    }
  }
  out += '"';
}

// Python's repr(float): the shortest digits that round-trip, positional for decimal exponents
// -4 .. 15, else scientific with a sign and at least two exponent digits.
std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string sci(buf, result.ptr);  // e.g. "-1.2345e+02"
  const size_t e = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (digits.size() <= static_cast<size_t>(exponent) + 1) {
      out += digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exponent) + 1) + "." + digits.substr(static_cast<size_t>(exponent) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  out += fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out;
}

void append_python_json(const Json& j, std::string& out) {
  switch (j.type()) {
    case Json::value_t::null: out += "null"; break;
    case Json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; break;
    case Json::value_t::number_integer: out += std::to_string(j.get<int64_t>()); break;
    case Json::value_t::number_unsigned: out += std::to_string(j.get<uint64_t>()); break;
    case Json::value_t::number_float: out += python_float_repr(j.get<double>()); break;
    case Json::value_t::string: append_python_json_string(j.get_ref<const std::string&>(), out); break;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& item : j) {
        if (!first) out += ", ";
        first = false;
        append_python_json(item, out);
      }
      out += ']';
      break;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : j.items()) {
        if (!first) out += ", ";
        first = false;
        append_python_json_string(key, out);
        out += ": ";
        append_python_json(value, out);
      }
      out += '}';
      break;
    }
    default: fail("chat: a JSON value of type {} cannot be rendered", j.type_name());
  }
}

// ---- parsing ---------------------------------------------------------------------------------

std::string string_field(const Json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) fail("{}: no \"{}\"", where, key);
  if (!it->is_string()) fail("{}: \"{}\" is {}, expected a string", where, key, it->type_name());
  return it->get<std::string>();
}

ChatToolCall parse_tool_call(const Json& call, const std::string& where) {
  if (!call.is_object()) fail("{}: is {}, expected an object", where, call.type_name());
  const Json& fn = call.contains("function") ? call["function"] : call;
  if (!fn.is_object()) fail("{}: \"function\" is {}, expected an object", where, fn.type_name());
  ChatToolCall out;
  out.name = string_field(fn, "name", where);
  const char* key = fn.contains("arguments") ? "arguments" : fn.contains("parameters") ? "parameters" : nullptr;
  if (!key) fail("{}: no \"arguments\" (or \"parameters\")", where);
  append_python_json(fn[key], out.arguments_json);
  return out;
}

}  // namespace

std::string python_json_string(std::string_view text) {
  std::string out;
  append_python_json_string(text, out);
  return out;
}

std::string python_json_dumps(std::string_view json) {
  Json j;
  try {
    j = Json::parse(json);
  } catch (const Json::exception& e) {
    fail("not JSON: {}", json_error_text(e, json));
  }
  std::string out;
  append_python_json(j, out);
  return out;
}

const std::vector<std::string>& chat_special_tokens() {
  static const std::vector<std::string> tokens = {"[|system|]", "[|user|]", "[|assistant|]", "[|tool|]",
                                                  "[|endofturn|]", "<think>", "</think>"};
  return tokens;
}

Conversation parse_chat_record(std::string_view json) {
  Json record;
  try {
    record = Json::parse(json);
  } catch (const Json::exception& e) {
    fail("malformed JSON: {}", json_error_text(e, json));
  }
  if (!record.is_object()) fail("expected a JSON object with \"messages\", found {}", record.type_name());
  if (record.contains("tools") && !record["tools"].is_null() && !record["tools"].empty())
    fail("\"tools\" (tool definitions) is not supported: the EXAONE-4 template would put them in the system turn; "
         "write them into the system message's content instead");
  const auto it = record.find("messages");
  if (it == record.end()) fail("no \"messages\" field");
  if (!it->is_array()) fail("\"messages\" is {}, expected an array of messages", it->type_name());
  if (it->empty()) fail("\"messages\" is empty");
  Conversation out;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string where = fmt::format("message {}", i + 1);
    if (!m.is_object()) fail("{}: is {}, expected an object with \"role\" and \"content\"", where, m.type_name());
    ChatMessage msg;
    msg.role = string_field(m, "role", where);
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      fail("{}: unknown role '{}' (expected system, user, assistant or tool)", where, msg.role);
    const std::string who = fmt::format("{} ({})", where, msg.role);
    if (msg.role == "assistant") {
      if (const auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
        if (!calls->is_array()) fail("{}: \"tool_calls\" is {}, expected an array", who, calls->type_name());
        for (size_t k = 0; k < calls->size(); ++k)
          msg.tool_calls.push_back(parse_tool_call((*calls)[k], fmt::format("{}: tool call {}", who, k + 1)));
      }
      if (const auto r = m.find("reasoning_content"); r != m.end() && !r->is_null()) {
        if (!r->is_string()) fail("{}: \"reasoning_content\" is {}, expected a string", who, r->type_name());
        msg.reasoning_content = r->get<std::string>();
      }
    }
    const auto content = m.find("content");
    const bool may_omit = msg.role == "assistant" && !msg.tool_calls.empty();  // OpenAI style: null with tool calls
    if (content == m.end() || content->is_null()) {
      if (!may_omit) fail("{}: no \"content\" (every message needs a string, \"\" for none)", who);
    } else if (!content->is_string()) {
      fail("{}: \"content\" is {}, expected a string", who, content->type_name());
    } else {
      msg.content = content->get<std::string>();
    }
    out.push_back(std::move(msg));
  }
  return out;
}

namespace {

void check_no_turn_markers(std::string_view text, const std::string& what) {
  for (std::string_view marker : kTurnMarkers)
    if (text.find(marker) != std::string_view::npos)
      fail("{} contains '{}', which the tokenizer would read as a turn marker; remove it from the data", what, marker);
}

}  // namespace

RenderedChat render_chat(const Conversation& messages, const ChatTemplateOptions& options) {
  if (messages.empty()) fail("chat: a conversation needs at least one message");
  RenderedChat out;
  std::string& text = out.text;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool last = i + 1 == messages.size();
    const std::string who = fmt::format("message {} ({})", i + 1, m.role);
    check_no_turn_markers(m.content, who + ": the content");
    if (m.reasoning_content) check_no_turn_markers(*m.reasoning_content, who + ": reasoning_content");
    for (const auto& call : m.tool_calls) {
      check_no_turn_markers(call.name, who + ": a tool call's name");
      check_no_turn_markers(call.arguments_json, who + ": a tool call's arguments");
    }
    if (m.role == "system" || m.role == "user") {
      text += "[|" + m.role + "|]\n";
      text += m.content;
      text += kEndOfTurn;
      text += '\n';
    } else if (m.role == "assistant") {
      text += "[|assistant|]\n";
      const size_t span_begin = text.size();
      if (!m.content.empty()) {
        std::string answer = m.content;
        std::optional<std::string> thought;
        if (const size_t first_close = m.content.find("</think>"); first_close != std::string::npos) {
          const size_t last_close = m.content.rfind("</think>");
          answer = python_strip(std::string_view(m.content).substr(last_close + 8));
          thought = python_strip(std::string_view(m.content).substr(0, first_close));
          // As the EXAONE-4.0 template does: reasoning_content[9:] after "<think>" (7 characters).
          if (thought->starts_with("<think>")) thought = python_strip(python_slice_from(*thought, 9));
        }
        if (m.reasoning_content && !m.reasoning_content->empty()) thought = *m.reasoning_content;
        if (!options.skip_think && last && thought) {
          text += "<think>\n";
          text += *thought;
          text += "\n</think>\n\n";
        } else {
          text += kEmptyThink;
        }
        text += answer;
      }
      if (!m.tool_calls.empty()) {
        text += m.content.empty() ? kEmptyThink : std::string_view("\n");
        for (size_t k = 0; k < m.tool_calls.size(); ++k) {
          text += "<tool_call>{\"name\": \"" + m.tool_calls[k].name + "\", \"arguments\": " +
                  m.tool_calls[k].arguments_json + "}</tool_call>";
          if (k + 1 < m.tool_calls.size()) text += '\n';
        }
      }
      text += kEndOfTurn;
      out.assistant_spans.emplace_back(span_begin, text.size());
      text += '\n';
    } else if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") text += "[|tool|]\n";
      text += "<tool_result>{\"result\": ";
      append_python_json_string(m.content, text);
      text += "}</tool_result>";
      if (last || messages[i + 1].role != "tool") {
        text += kEndOfTurn;
        text += '\n';
      } else {
        text += '\n';
      }
    } else {
      fail("chat: {}: unknown role '{}' (expected system, user, assistant or tool)", who, m.role);
    }
  }
  if (options.add_generation_prompt) {  // the template's add_generation_prompt block
    text += "[|assistant|]\n";
    text += options.enable_thinking ? std::string_view("<think>\n") : kEmptyThink;
  }
  return out;
}

uint64_t ChatTokens::masked_tokens() const {
  uint64_t n = 0;
  for (uint8_t m : loss_mask) n += m;
  return n;
}

ChatTokens encode_chat(const RenderedChat& rendered, const ChatEncodeFn& encode) {
  const std::string_view text = rendered.text;
  ChatTokens out;
  size_t pos = 0;
  auto add_piece = [&](size_t end, uint8_t mask) {
    if (end <= pos) return;
    const std::vector<uint32_t> ids = encode(text.substr(pos, end - pos));
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
    out.loss_mask.insert(out.loss_mask.end(), ids.size(), mask);
    pos = end;
  };
  for (const auto& [begin, end] : rendered.assistant_spans) {
    add_piece(begin, 0);
    add_piece(end, 1);
  }
  add_piece(text.size(), 0);
  if (encode(text) != out.ids)
    fail("chat: the tokenizer encodes the conversation differently in pieces than as a whole, so the loss mask "
         "cannot be placed; it must have {} as special tokens (an EXAONE-4 tokenizer)",
         fmt::join(chat_special_tokens(), " "));
  return out;
}

}  // namespace exatrain
