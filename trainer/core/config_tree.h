// A YAML document as a tree that remembers where every value came from (file:line:column,
// or the --set argument), so that errors found after merging presets, run configs and
// command-line overrides still point at the text the user wrote.
#pragma once

#include <string>
#include <vector>

namespace exatrain {

struct SourceLoc {
  std::string origin;  // a file path, or "--set key=value"
  int line = 0;        // 1-based; 0 when the origin has no lines
  int column = 0;      // 1-based
  std::string str() const;
};

class ConfigNode {
 public:
  enum class Kind { Null, Scalar, Sequence, Map };
  struct Entry;

  Kind kind = Kind::Null;
  std::string scalar;             // Kind::Scalar: the text as written
  bool quoted = false;            // Kind::Scalar: written in quotes (always a string)
  std::vector<ConfigNode> items;  // Kind::Sequence
  std::vector<Entry> entries;     // Kind::Map, in document order
  SourceLoc loc;

  bool is_map() const { return kind == Kind::Map; }
  const ConfigNode* find(const std::string& key) const;
  ConfigNode* find(const std::string& key);
  // Inserts or replaces.
  ConfigNode& set(const std::string& key, ConfigNode value, SourceLoc key_loc);
  bool erase(const std::string& key);
  const char* kind_name() const;
};

struct ConfigNode::Entry {
  std::string key;
  SourceLoc key_loc;
  ConfigNode value;
};

// Parses YAML text; syntax errors name origin:line:column.
ConfigNode parse_yaml(const std::string& text, const std::string& origin);
// Reads and parses a file; a missing or unreadable file is an Error naming it.
ConfigNode load_yaml_file(const std::string& path);

// Maps merge key by key (recursively); any other value in `over` replaces the one in `base`.
void merge_config(ConfigNode& base, const ConfigNode& over);

// Applies "a.b.c=value" (the value is parsed as YAML: numbers, booleans, lists work).
void apply_override(ConfigNode& root, const std::string& assignment);

// Emits the tree as YAML (used by `config show` and config.resolved.yaml).
std::string to_yaml(const ConfigNode& node);

// Edit distance, for "did you mean" suggestions.
int edit_distance(const std::string& a, const std::string& b);
// The candidate closest to `word`, or "" when none is plausibly a typo of it.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace exatrain
