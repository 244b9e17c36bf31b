// Typed config sections describe their fields once, in a `visit` method:
//
//   template <class V> void visit(V& v) {
//     v.field("lr", lr, "peak learning rate", Bounds::above(0));
//     v.choice("precision", precision, kPrecisionNames, "compute precision");
//     v.section("rope_scaling", rope_scaling, "RoPE frequency scaling");
//     v.list("datasets", datasets, "training datasets");   // a list of sections
//   }
//
// ConfigReader walks that description over a ConfigNode (type checks, bounds, unknown keys with
// a suggestion, locations recorded for later cross-field checks); ConfigWriter turns a struct
// back into a ConfigNode (for `config show` and config.resolved.yaml); ConfigDocWriter lists keys.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "trainer/core/config_tree.h"
#include "trainer/core/error.h"

namespace exatrain {

struct Bounds {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;  // lo itself is not allowed
  static Bounds at_least(double lo) { return Bounds{lo}; }
  static Bounds above(double lo) { return Bounds{lo, std::numeric_limits<double>::infinity(), true}; }
  static Bounds between(double lo, double hi) { return Bounds{lo, hi}; }
  bool contains(double x) const { return (lo_open ? x > lo : x >= lo) && x <= hi; }
  std::string describe() const;
};

template <class E>
using ChoiceNames = std::vector<std::pair<const char*, E>>;

// Where each key of the resolved config came from: "model.num_heads" -> file:line:column.
class ConfigLocations {
 public:
  void record(const std::string& path, const SourceLoc& loc) { locs_[path] = loc; }
  // "file:line:col: key" when the key was written somewhere, else "key (default)".
  std::string where(const std::string& path) const;
  // Where the key was written, or nullptr for a default.
  const SourceLoc* find(const std::string& path) const;

 private:
  std::map<std::string, SourceLoc> locs_;
};

// Throws a config error at `path` with its location: "<file:line:col>: <path>: <message>".
[[noreturn]] void config_error(const ConfigLocations& locs, const std::string& path,
                               const std::string& message);

// As config_error, for a rule between two keys: reports at `path` and says where `other` was set.
[[noreturn]] void config_error2(const ConfigLocations& locs, const std::string& path, const std::string& other,
                                const std::string& message);

class ConfigReader {
 public:
  ConfigReader(const ConfigNode* node, std::string path, ConfigLocations& locs);

  void field(const char* name, int64_t& value, const char* doc, Bounds bounds = {});
  void field(const char* name, double& value, const char* doc, Bounds bounds = {});
  void field(const char* name, bool& value, const char* doc);
  void field(const char* name, std::string& value, const char* doc);
  void field(const char* name, std::vector<std::string>& value, const char* doc);
  void field(const char* name, std::vector<int64_t>& value, const char* doc, Bounds bounds = {});

  template <class E>
  void choice(const char* name, E& value, const ChoiceNames<E>& names, const char* doc) {
    const ConfigNode* n = take(name);
    if (!n) return;
    const std::string text = scalar_of(name, *n, "one of " + list_names(names));
    for (const auto& [label, v] : names) {
      if (text == label) {
        value = v;
        return;
      }
    }
    std::vector<std::string> labels;
    for (const auto& [label, v] : names) labels.emplace_back(label);
    std::string hint = closest_match(text, labels);
    fail("{}: {}: expected one of {}, found '{}'{}", n->loc.str(), child_path(name),
         list_names(names), text, hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
    (void)doc;
  }

  template <class S>
  void section(const char* name, S& value, const char* doc) {
    (void)doc;
    const ConfigNode* n = take(name);
    if (n && !n->is_map() && n->kind != ConfigNode::Kind::Null)
      fail("{}: {}: expected a section (a mapping of keys), found {}", n->loc.str(),
           child_path(name), n->kind_name());
    ConfigReader nested(n && n->is_map() ? n : nullptr, child_path(name), locs_);
    value.visit(nested);
    nested.finish();
  }

  // A list of sections ("- path: a\n  weight: 2"); item i's keys are reported as name[i].key.
  template <class S>
  void list(const char* name, std::vector<S>& value, const char* doc) {
    (void)doc;
    const ConfigNode* n = take(name);
    if (!n) return;
    value.clear();
    if (n->kind == ConfigNode::Kind::Null) return;
    if (n->kind != ConfigNode::Kind::Sequence)
      fail("{}: {}: expected a list of sections (lines starting with '- key: value'), found {}", n->loc.str(),
           child_path(name), n->kind_name());
    for (size_t i = 0; i < n->items.size(); ++i) {
      const ConfigNode& item = n->items[i];
      const std::string path = fmt::format("{}[{}]", child_path(name), i);
      if (!item.is_map())
        fail("{}: {}: expected a section (a mapping of keys), found {}", item.loc.str(), path, item.kind_name());
      S s;
      ConfigReader nested(&item, path, locs_);
      s.visit(nested);
      nested.finish();
      value.push_back(std::move(s));
    }
  }

  // Every key in the mapping must have been read by now; reports the first unknown one.
  void finish();

 private:
  const ConfigNode* take(const char* name);
  std::string scalar_of(const char* name, const ConfigNode& n, const std::string& expected);
  std::string child_path(const char* name) const { return path_.empty() ? name : path_ + "." + name; }
  template <class E>
  static std::string list_names(const ChoiceNames<E>& names) {
    std::string s;
    for (const auto& [label, v] : names) s += (s.empty() ? "" : ", ") + std::string(label);
    return s;
  }

  const ConfigNode* node_;
  std::string path_;
  ConfigLocations& locs_;
  std::vector<std::string> known_;
};

class ConfigWriter {
 public:
  ConfigNode node;
  ConfigWriter() { node.kind = ConfigNode::Kind::Map; }

  void field(const char* name, const int64_t& v, const char*, Bounds = {});
  void field(const char* name, const double& v, const char*, Bounds = {});
  void field(const char* name, const bool& v, const char*);
  void field(const char* name, const std::string& v, const char*);
  void field(const char* name, const std::vector<std::string>& v, const char*);
  void field(const char* name, const std::vector<int64_t>& v, const char*, Bounds = {});
  template <class E>
  void choice(const char* name, const E& value, const ChoiceNames<E>& names, const char*) {
    for (const auto& [label, v] : names)
      if (v == value) return put(name, label, false);
    put(name, "?", false);
  }
  template <class S>
  void section(const char* name, const S& value, const char*) {
    ConfigWriter nested;
    const_cast<S&>(value).visit(nested);
    node.set(name, nested.node, SourceLoc{});
  }
  template <class S>
  void list(const char* name, const std::vector<S>& value, const char*) {
    ConfigNode seq;
    seq.kind = ConfigNode::Kind::Sequence;
    for (const S& item : value) {
      ConfigWriter nested;
      const_cast<S&>(item).visit(nested);
      seq.items.push_back(nested.node);
    }
    node.set(name, seq, SourceLoc{});
  }

 private:
  void put(const char* name, const std::string& scalar, bool quoted);
};

// One line per key: "model.num_heads  int >= 1  attention heads (query heads)".
class ConfigDocWriter {
 public:
  std::vector<std::string> lines;
  explicit ConfigDocWriter(std::string prefix = "") : prefix_(std::move(prefix)) {}

  void field(const char* name, const int64_t& v, const char* doc, Bounds b = {});
  void field(const char* name, const double& v, const char* doc, Bounds b = {});
  void field(const char* name, const bool& v, const char* doc);
  void field(const char* name, const std::string& v, const char* doc);
  void field(const char* name, const std::vector<std::string>& v, const char* doc);
  void field(const char* name, const std::vector<int64_t>& v, const char* doc, Bounds b = {});
  template <class E>
  void choice(const char* name, const E& value, const ChoiceNames<E>& names, const char* doc) {
    std::string labels, current;
    for (const auto& [label, v] : names) {
      labels += (labels.empty() ? "" : "|") + std::string(label);
      if (v == value) current = label;
    }
    add(name, labels, current, doc);
  }
  template <class S>
  void section(const char* name, const S& value, const char*) {
    ConfigDocWriter nested(prefix_ + name + ".");
    const_cast<S&>(value).visit(nested);
    lines.insert(lines.end(), nested.lines.begin(), nested.lines.end());
  }
  // "data.datasets  list of sections", then each key of one item as "data.datasets[].path".
  template <class S>
  void list(const char* name, const std::vector<S>&, const char* doc) {
    add(name, "list of sections", "[]", doc);
    ConfigDocWriter nested(prefix_ + name + "[].");
    S item;
    item.visit(nested);
    lines.insert(lines.end(), nested.lines.begin(), nested.lines.end());
  }

 private:
  void add(const char* name, const std::string& type, const std::string& current, const char* doc);
  std::string prefix_;
};

}  // namespace exatrain
