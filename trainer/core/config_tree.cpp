#include "trainer/core/config_tree.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
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

ConfigNode convert(const YAML::Node& node, const std::string& origin) {
  ConfigNode out;
  out.loc = loc_of(node.Mark(), origin);
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out.kind = ConfigNode::Kind::Null;
      break;
    case YAML::NodeType::Scalar:
      out.kind = ConfigNode::Kind::Scalar;
      out.scalar = node.Scalar();
      out.quoted = node.Tag() == "!";
      break;
    case YAML::NodeType::Sequence:
      out.kind = ConfigNode::Kind::Sequence;
      for (const auto& item : node) out.items.push_back(convert(item, origin));
      break;
    case YAML::NodeType::Map:
      out.kind = ConfigNode::Kind::Map;
      for (const auto& kv : node) {
        SourceLoc key_loc = loc_of(kv.first.Mark(), origin);
        if (!kv.first.IsScalar())
          fail("{}: a mapping key must be a plain name, found {}", key_loc.str(),
               kv.first.IsMap() ? "a mapping" : "a list");
        const std::string key = kv.first.Scalar();
        if (out.find(key))
          fail("{}: key '{}' appears twice in the same mapping", key_loc.str(), key);
        out.entries.push_back(ConfigNode::Entry{key, key_loc, convert(kv.second, origin)});
      }
      break;
  }
  return out;
}

}  // namespace

ConfigNode parse_yaml(const std::string& text, const std::string& origin) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", loc_of(e.mark, origin).str(), e.msg);
  }
  if (docs.size() > 1)
    fail("{}: holds {} YAML documents (separated by '---'); a config is one document",
         loc_of(docs[1].Mark(), origin).str(), docs.size());
  YAML::Node root = docs.empty() ? YAML::Node() : docs.front();
  return convert(root, origin);
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
