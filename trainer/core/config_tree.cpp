#include "trainer/core/config_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "trainer/core/error.h"

namespace exatrain {

std::string SourceLoc::str() const {
  if (line <= 0) return origin;
  return fmt::format("{}:{}:{}", origin, line, column);
}

const ConfigNode* ConfigNode::find(const std::string& key) const {
  for (const auto& e : entries)
    if (e.key == key) return &e.value;
  return nullptr;
}

ConfigNode* ConfigNode::find(const std::string& key) {
  for (auto& e : entries)
    if (e.key == key) return &e.value;
  return nullptr;
}

ConfigNode& ConfigNode::set(const std::string& key, ConfigNode value, SourceLoc key_loc) {
  kind = Kind::Map;
  for (auto& e : entries) {
    if (e.key == key) {
      e.value = std::move(value);
      e.key_loc = std::move(key_loc);
      return e.value;
    }
  }
  entries.push_back(Entry{key, std::move(key_loc), std::move(value)});
  return entries.back().value;
}

bool ConfigNode::erase(const std::string& key) {
  auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.key == key; });
  if (it == entries.end()) return false;
  entries.erase(it);
  return true;
}

const char* ConfigNode::kind_name() const {
  switch (kind) {
    case Kind::Null: return "nothing (null)";
    case Kind::Scalar: return "a scalar";
    case Kind::Sequence: return "a list";
    case Kind::Map: return "a mapping";
  }
  return "?";
}

namespace {

SourceLoc loc_of(const YAML::Mark& mark, const std::string& origin) {
  if (mark.line < 0) return SourceLoc{origin, 0, 0};
  return SourceLoc{origin, mark.line + 1, mark.column + 1};
}

// Builds the ConfigNode tree straight from yaml-cpp's parser events (YAML::Parser), so that
// yaml-cpp never builds its own node graph. That graph is where yaml-cpp 0.7 fails on hostile
// input: a self-referencing alias (`x: &a [*a]`) recursed until SIGSEGV and an alias "billion
// laughs" expanded to gigabytes. A config needs neither anchors nor aliases, so the first
// anchor or alias ends the parse with file:line before anything is expanded.
// Why yaml-cpp's event parser rather than libfyaml (which passes the YAML test suite): the
// tree is built from events in one pass with no second library, no new package and the same
// scalar rules (null, quoted) as before; the one scanner bug that matters here (below) costs
// a dozen lines.
class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(const std::string& text, const std::string& origin) : text_(text), origin_(origin) {
    // yaml-cpp's Mark::pos counts characters after a byte-order mark; only UTF-8 maps them
    // to bytes of `text`.
    if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) bom_ = 3;
    utf8_ = !(text.size() >= 2 && (text[0] == '\0' || text[1] == '\0' || text.compare(0, 2, "\xFE\xFF") == 0 ||
                                    text.compare(0, 2, "\xFF\xFE") == 0));
  }

  std::vector<ConfigNode> documents;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnAnchor(const YAML::Mark& mark, const std::string& name) override {
    fail("{}: YAML anchors (&{}) are not supported in a config; write the value out in full",
         loc_of(mark, origin_).str(), name);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    fail("{}: YAML aliases (*name) are not supported in a config; write the value out in full",
         loc_of(mark, origin_).str());
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { add(start(ConfigNode::Kind::Null, mark)); }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t, const std::string& value) override {
    if (tag != "?") check_quote_closed(mark);
    ConfigNode n = start(ConfigNode::Kind::Scalar, mark);
    n.scalar = value;
    n.quoted = tag == "!";  // yaml-cpp's non-specific tag of a quoted (or block) scalar
    add(std::move(n));
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    open_.push_back(Open{start(ConfigNode::Kind::Sequence, mark)});
  }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    open_.push_back(Open{start(ConfigNode::Kind::Map, mark)});
  }
  void OnSequenceEnd() override { close(); }
  void OnMapEnd() override { close(); }

 private:
  struct Open {  // a list or mapping whose items are still arriving
    ConfigNode node;
    std::optional<ConfigNode> key;  // a mapping's key waiting for its value
  };

  ConfigNode start(ConfigNode::Kind kind, const YAML::Mark& mark) const {
    ConfigNode n;
    n.kind = kind;
    n.loc = loc_of(mark, origin_);
    return n;
  }

  void close() {
    ConfigNode done = std::move(open_.back().node);
    open_.pop_back();
    add(std::move(done));
  }

  void add(ConfigNode n) {
    if (open_.empty()) {
      documents.push_back(std::move(n));
      return;
    }
    Open& parent = open_.back();
    if (parent.node.kind == ConfigNode::Kind::Sequence) {
      parent.node.items.push_back(std::move(n));
    } else if (!parent.key) {
      if (n.kind != ConfigNode::Kind::Scalar)
        fail("{}: a mapping key must be a plain name, found {}", n.loc.str(),
             n.kind == ConfigNode::Kind::Map ? "a mapping" : n.kind == ConfigNode::Kind::Sequence ? "a list" : "nothing");
      if (parent.node.find(n.scalar))
        fail("{}: key '{}' appears twice in the same mapping", n.loc.str(), n.scalar);
      parent.key = std::move(n);
    } else {
      parent.node.entries.push_back(ConfigNode::Entry{parent.key->scalar, parent.key->loc, std::move(n)});
      parent.key.reset();
    }
  }

  // yaml-cpp 0.7 accepts a quoted string that is never closed when the end of the input comes
  // after a line break (ScanScalar leaves its loop at the end of the input without the
  // EOF_IN_SCALAR check): the string silently swallows every key below it. PyYAML and the
  // YAML spec reject it. yaml-cpp marks a quoted scalar at its opening quote (after any tag);
  // find its closing quote by the same escape rules (`\x` in "...", '' in '...').
  void check_quote_closed(const YAML::Mark& mark) const {
    if (!utf8_ || mark.pos < 0) return;
    size_t i = static_cast<size_t>(mark.pos) + bom_;
    while (i < text_.size() && text_[i] == '!') {  // a tag: `!!str "..."`
      while (i < text_.size() && !std::isspace(static_cast<unsigned char>(text_[i]))) ++i;
      while (i < text_.size() && std::isspace(static_cast<unsigned char>(text_[i]))) ++i;
    }
    if (i >= text_.size() || (text_[i] != '"' && text_[i] != '\'')) return;  // a block scalar (| or >)
    const char quote = text_[i];
    for (++i; i < text_.size(); ++i) {
      if (quote == '"' && text_[i] == '\\') {
        ++i;
      } else if (text_[i] == quote) {
        if (quote == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {
          ++i;
          continue;
        }
        return;
      }
    }
    fail("{}: invalid YAML: the {}-quoted string that opens here is never closed, so it swallows the rest of "
         "the {}; add the closing {}",
         loc_of(mark, origin_).str(), quote == '"' ? "double" : "single",
         origin_.rfind("--set ", 0) == 0 ? "value" : "file", quote);
  }

  const std::string& text_;
  const std::string& origin_;
  size_t bom_ = 0;
  bool utf8_ = true;
  std::vector<Open> open_;
};

}  // namespace

ConfigNode parse_yaml(const std::string& text, const std::string& origin) {
  TreeBuilder builder(text, origin);
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const YAML::Exception& e) {
    // Anchors are refused as they are defined, so any alias names an unknown anchor.
    if (e.msg.rfind(YAML::ErrorMsg::UNKNOWN_ANCHOR, 0) == 0)
      fail("{}: YAML aliases (*name) are not supported in a config; write the value out in full",
           loc_of(e.mark, origin).str());
    fail("{}: invalid YAML: {}", loc_of(e.mark, origin).str(), e.msg);
  }
  const auto& docs = builder.documents;
  if (docs.size() > 1)
    fail("{}: holds {} YAML documents (separated by '---'); a config is one document", docs[1].loc.str(),
         docs.size());
  if (!docs.empty()) return docs.front();
  ConfigNode empty;  // no document at all: null
  empty.loc = SourceLoc{origin, 0, 0};
  return empty;
}

ConfigNode load_yaml_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("config '{}' is a directory, not a YAML file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read config file '{}': {}", path, std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) fail("cannot read config file '{}': read error", path);
  ConfigNode node = parse_yaml(buffer.str(), path);
  if (node.kind == ConfigNode::Kind::Null) {
    node.kind = ConfigNode::Kind::Map;  // an empty file is an empty config
    node.loc = SourceLoc{path, 1, 1};
  }
  if (!node.is_map())
    fail("{}: a config file must be a mapping of sections (model:, train:, ...), found {}",
         node.loc.str(), node.kind_name());
  return node;
}

void merge_config(ConfigNode& base, const ConfigNode& over) {
  if (base.is_map() && over.is_map()) {
    for (const auto& e : over.entries) {
      ConfigNode* existing = base.find(e.key);
      if (existing && existing->is_map() && e.value.is_map())
        merge_config(*existing, e.value);
      else
        base.set(e.key, e.value, e.key_loc);
    }
    return;
  }
  base = over;
}

void apply_override(ConfigNode& root, const std::string& assignment) {
  const std::string origin = "--set " + assignment;
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    fail("{}: expected KEY.PATH=VALUE, for example --set train.steps=100", origin);
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);

  std::vector<std::string> keys;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) fail("{}: empty component in key path '{}'", origin, path);
    keys.push_back(part);
  }
  ConfigNode value = parse_yaml(text, origin);
  // Values from the command line have no lines; point at the assignment itself.
  std::vector<ConfigNode*> stack{&value};
  while (!stack.empty()) {
    ConfigNode* n = stack.back();
    stack.pop_back();
    n->loc = SourceLoc{origin, 0, 0};
    for (auto& i : n->items) stack.push_back(&i);
    for (auto& e : n->entries) {
      e.key_loc = SourceLoc{origin, 0, 0};
      stack.push_back(&e.value);
    }
  }
  if (value.kind == ConfigNode::Kind::Null && text.empty())
    fail("{}: missing value after '='", origin);

  ConfigNode* node = &root;
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    ConfigNode* child = node->find(keys[i]);
    if (!child) {
      ConfigNode empty;
      empty.kind = ConfigNode::Kind::Map;
      empty.loc = SourceLoc{origin, 0, 0};
      child = &node->set(keys[i], empty, SourceLoc{origin, 0, 0});
    }
    if (!child->is_map())
      fail("{}: '{}' is {} in the config, not a section with keys", origin, keys[i],
           child->kind_name());
    node = child;
  }
  ConfigNode* existing = node->find(keys.back());
  if (existing && existing->is_map() && value.is_map())
    merge_config(*existing, value);
  else
    node->set(keys.back(), value, SourceLoc{origin, 0, 0});
}

namespace {

void emit(YAML::Emitter& out, const ConfigNode& node) {
  switch (node.kind) {
    case ConfigNode::Kind::Null:
      out << YAML::Null;
      break;
    case ConfigNode::Kind::Scalar:
      if (node.quoted) out << YAML::DoubleQuoted;
      out << node.scalar;
      break;
    case ConfigNode::Kind::Sequence: {
      bool flat = std::all_of(node.items.begin(), node.items.end(),
                              [](const ConfigNode& n) { return n.kind == ConfigNode::Kind::Scalar; });
      if (flat) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const auto& item : node.items) emit(out, item);
      out << YAML::EndSeq;
      break;
    }
    case ConfigNode::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& e : node.entries) {
        out << YAML::Key << e.key << YAML::Value;
        emit(out, e.value);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

std::string to_yaml(const ConfigNode& node) {
  YAML::Emitter out;
  emit(out, node);
  return std::string(out.c_str()) + "\n";
}

int edit_distance(const std::string& a, const std::string& b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_d = 1 << 30;
  for (const auto& c : candidates) {
    int d = edit_distance(word, c);
    // A substring relation ("heads" vs "num_heads") counts as close.
    if (c.find(word) != std::string::npos || word.find(c) != std::string::npos) d = std::min(d, 2);
    if (d < best_d) best_d = d, best = c;
  }
  const int limit = std::max<int>(2, static_cast<int>(word.size()) / 3);
  return best_d <= limit ? best : std::string();
}

}  // namespace exatrain
