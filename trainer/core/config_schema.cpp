#include "trainer/core/config_schema.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace exatrain {

std::string Bounds::describe() const {
  const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi) return fmt::format("between {} and {}", lo, hi);
  if (has_lo) return fmt::format("{} {}", lo_open ? ">" : ">=", lo);
  if (has_hi) return fmt::format("<= {}", hi);
  return "any value";
}

std::string ConfigLocations::where(const std::string& path) const {
  auto it = locs_.find(path);
  if (it == locs_.end() || it->second.origin.empty()) return path + " (default)";
  return it->second.str() + ": " + path;
}

const SourceLoc* ConfigLocations::find(const std::string& path) const {
  auto it = locs_.find(path);
  return it == locs_.end() ? nullptr : &it->second;
}

void config_error(const ConfigLocations& locs, const std::string& path, const std::string& message) {
  fail("{}: {}", locs.where(path), message);
}

void config_error2(const ConfigLocations& locs, const std::string& path, const std::string& other,
                   const std::string& message) {
  fail("{}: {} (with {})", locs.where(path), message, locs.where(other));
}

ConfigReader::ConfigReader(const ConfigNode* node, std::string path, ConfigLocations& locs)
    : node_(node), path_(std::move(path)), locs_(locs) {}

const ConfigNode* ConfigReader::take(const char* name) {
  known_.emplace_back(name);
  if (!node_) return nullptr;
  for (const auto& e : node_->entries) {
    if (e.key == name) {
      locs_.record(child_path(name), e.value.loc.origin.empty() ? e.key_loc : e.value.loc);
      return &e.value;
    }
  }
  return nullptr;
}

std::string ConfigReader::scalar_of(const char* name, const ConfigNode& n, const std::string& expected) {
  if (n.kind != ConfigNode::Kind::Scalar)
    fail("{}: {}: expected {}, found {}", n.loc.str(), child_path(name), expected, n.kind_name());
  return n.scalar;
}

void ConfigReader::field(const char* name, int64_t& value, const char*, Bounds bounds) {
  const ConfigNode* n = take(name);
  if (!n) return;
  const std::string expected = "an integer " + bounds.describe();
  const std::string text = scalar_of(name, *n, expected);
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (n->quoted || text.empty() || *end != '\0' || errno == ERANGE)
    fail("{}: {}: expected an integer, found {}'{}'", n->loc.str(), child_path(name),
         n->quoted ? "the string " : "", text);
  if (!bounds.contains(static_cast<double>(v)))
    fail("{}: {}: expected {}, found {}", n->loc.str(), child_path(name), expected, v);
  value = v;
}

void ConfigReader::field(const char* name, double& value, const char*, Bounds bounds) {
  const ConfigNode* n = take(name);
  if (!n) return;
  const std::string expected = "a number " + bounds.describe();
  const std::string text = scalar_of(name, *n, expected);
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (n->quoted || text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    fail("{}: {}: expected a number, found {}'{}'", n->loc.str(), child_path(name),
         n->quoted ? "the string " : "", text);
  if (!bounds.contains(v))
    fail("{}: {}: expected {}, found {}", n->loc.str(), child_path(name), expected, text);
  value = v;
}

void ConfigReader::field(const char* name, bool& value, const char*) {
  const ConfigNode* n = take(name);
  if (!n) return;
  const std::string text = scalar_of(name, *n, "true or false");
  if (!n->quoted && (text == "true" || text == "True")) {
    value = true;
  } else if (!n->quoted && (text == "false" || text == "False")) {
    value = false;
  } else {
    fail("{}: {}: expected true or false, found {}'{}'", n->loc.str(), child_path(name),
         n->quoted ? "the string " : "", text);
  }
}

void ConfigReader::field(const char* name, std::string& value, const char*) {
  const ConfigNode* n = take(name);
  if (!n) return;
  if (n->kind == ConfigNode::Kind::Null) {
    value.clear();
    return;
  }
  value = scalar_of(name, *n, "a string");
}

void ConfigReader::field(const char* name, std::vector<std::string>& value, const char*) {
  const ConfigNode* n = take(name);
  if (!n) return;
  if (n->kind == ConfigNode::Kind::Null) {
    value.clear();
    return;
  }
  if (n->kind != ConfigNode::Kind::Sequence)
    fail("{}: {}: expected a list of strings, found {}", n->loc.str(), child_path(name), n->kind_name());
  value.clear();
  for (size_t i = 0; i < n->items.size(); ++i) {
    const ConfigNode& item = n->items[i];
    if (item.kind != ConfigNode::Kind::Scalar)
      fail("{}: {}[{}]: expected a string, found {}", item.loc.str(), child_path(name), i, item.kind_name());
    value.push_back(item.scalar);
  }
}

void ConfigReader::field(const char* name, std::vector<int64_t>& value, const char*, Bounds bounds) {
  const ConfigNode* n = take(name);
  if (!n) return;
  value.clear();
  if (n->kind == ConfigNode::Kind::Null) return;
  const std::string expected = "a list of integers " + bounds.describe();
  if (n->kind != ConfigNode::Kind::Sequence)
    fail("{}: {}: expected {} (e.g. [3, 4, 4, 3]), found {}", n->loc.str(), child_path(name), expected, n->kind_name());
  for (size_t i = 0; i < n->items.size(); ++i) {
    const ConfigNode& item = n->items[i];
    errno = 0;
    char* end = nullptr;
    const long long v = item.kind == ConfigNode::Kind::Scalar ? std::strtoll(item.scalar.c_str(), &end, 10) : 0;
    if (item.kind != ConfigNode::Kind::Scalar || item.quoted || item.scalar.empty() || *end != '\0' || errno == ERANGE)
      fail("{}: {}[{}]: expected an integer, found {}", item.loc.str(), child_path(name), i,
           item.kind == ConfigNode::Kind::Scalar ? "'" + item.scalar + "'" : std::string(item.kind_name()));
    if (!bounds.contains(static_cast<double>(v)))
      fail("{}: {}[{}]: expected an integer {}, found {}", item.loc.str(), child_path(name), i, bounds.describe(), v);
    value.push_back(v);
  }
}

void ConfigReader::finish() {
  if (!node_) return;
  for (const auto& e : node_->entries) {
    bool known = false;
    for (const auto& k : known_) known = known || k == e.key;
    if (known) continue;
    const std::string hint = closest_match(e.key, known_);
    std::string valid;
    for (const auto& k : known_) valid += (valid.empty() ? "" : ", ") + k;
    fail("{}: unknown key '{}'{}{}", e.key_loc.str(), path_.empty() ? e.key : path_ + "." + e.key,
         hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
         fmt::format("; valid keys{}: {}", path_.empty() ? "" : " in " + path_, valid));
  }
}

void ConfigWriter::put(const char* name, const std::string& scalar, bool quoted) {
  ConfigNode n;
  n.kind = ConfigNode::Kind::Scalar;
  n.scalar = scalar;
  n.quoted = quoted;
  node.set(name, n, SourceLoc{});
}

static std::string format_double(double v) {
  // Shortest text that reads back to the same double, and that YAML reads as a float.
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

void ConfigWriter::field(const char* name, const int64_t& v, const char*, Bounds) { put(name, std::to_string(v), false); }
void ConfigWriter::field(const char* name, const double& v, const char*, Bounds) { put(name, format_double(v), false); }
void ConfigWriter::field(const char* name, const bool& v, const char*) { put(name, v ? "true" : "false", false); }
void ConfigWriter::field(const char* name, const std::string& v, const char*) { put(name, v, true); }
void ConfigWriter::field(const char* name, const std::vector<std::string>& v, const char*) {
  ConfigNode n;
  n.kind = ConfigNode::Kind::Sequence;
  for (const auto& s : v) {
    ConfigNode item;
    item.kind = ConfigNode::Kind::Scalar;
    item.scalar = s;
    n.items.push_back(item);
  }
  node.set(name, n, SourceLoc{});
}

void ConfigWriter::field(const char* name, const std::vector<int64_t>& v, const char*, Bounds) {
  ConfigNode n;
  n.kind = ConfigNode::Kind::Sequence;
  for (int64_t x : v) {
    ConfigNode item;
    item.kind = ConfigNode::Kind::Scalar;
    item.scalar = std::to_string(x);
    n.items.push_back(item);
  }
  node.set(name, n, SourceLoc{});
}

void ConfigDocWriter::add(const char* name, const std::string& type, const std::string& current, const char* doc) {
  lines.push_back(fmt::format("{:<42} {:<30} {:<12} {}", prefix_ + name, type, current, doc));
}
void ConfigDocWriter::field(const char* name, const int64_t& v, const char* doc, Bounds b) {
  add(name, "int " + b.describe(), std::to_string(v), doc);
}
void ConfigDocWriter::field(const char* name, const double& v, const char* doc, Bounds b) {
  add(name, "float " + b.describe(), format_double(v), doc);
}
void ConfigDocWriter::field(const char* name, const bool& v, const char* doc) { add(name, "bool", v ? "true" : "false", doc); }
void ConfigDocWriter::field(const char* name, const std::string& v, const char* doc) {
  add(name, "string", v.empty() ? "\"\"" : v, doc);
}
void ConfigDocWriter::field(const char* name, const std::vector<std::string>& v, const char* doc) {
  add(name, "list of strings", v.empty() ? "[]" : fmt::format("[{} items]", v.size()), doc);
}
void ConfigDocWriter::field(const char* name, const std::vector<int64_t>& v, const char* doc, Bounds b) {
  add(name, "list of int " + b.describe(), v.empty() ? "[]" : fmt::format("[{} items]", v.size()), doc);
}

}  // namespace exatrain
