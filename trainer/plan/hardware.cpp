#include "trainer/plan/hardware.h"

#include <cstdlib>

#include "trainer/core/config_tree.h"
#include "trainer/core/error.h"

namespace exatrain {

const char* builtin_hardware_yaml();  // generated from configs/hardware.yaml

namespace {

ConfigNode hardware_tree(const std::string& path) {
  return path.empty() ? parse_yaml(builtin_hardware_yaml(), "configs/hardware.yaml") : load_yaml_file(path);
}

const ConfigNode& section(const ConfigNode& root, const std::string& key, const std::string& origin) {
  const ConfigNode* n = root.find(key);
  if (!n || !n->is_map()) fail("{}: needs a '{}:' mapping", origin, key);
  return *n;
}

double number(const ConfigNode& map, const std::string& key, const std::string& where) {
  const ConfigNode* n = map.find(key);
  if (!n || n->kind != ConfigNode::Kind::Scalar) fail("{}: '{}' is missing (a positive number)", where, key);
  char* end = nullptr;
  const double v = std::strtod(n->scalar.c_str(), &end);
  if (end == n->scalar.c_str() || *end != '\0' || !(v > 0))
    fail("{}: '{}' is '{}', expected a positive number", n->loc.str(), key, n->scalar);
  return v;
}

}  // namespace

Hardware load_hardware(const std::string& name, const std::string& path) {
  const std::string origin = path.empty() ? "configs/hardware.yaml" : path;
  const ConfigNode root = hardware_tree(path);
  const ConfigNode& gpus = section(root, "gpus", origin);
  const ConfigNode* gpu = gpus.find(name);
  if (!gpu || !gpu->is_map()) {
    std::string known;
    for (const auto& e : gpus.entries) known += (known.empty() ? "" : ", ") + e.key;
    fail("unknown GPU '{}' ({} lists: {}); add it to that file with its datasheet figures", name, origin, known);
  }
  const ConfigNode& eff = section(root, "efficiency", origin);
  const std::string where = origin + ": gpus." + name;
  // efficiency.nvlink and efficiency.network: the share of the one-way line rate NCCL's
  // collectives reach on each; efficiency.link is the default of either one a file does not state
  // (the CPU hardware tests/multirank/memory_model.py writes states only it).
  const std::string eff_where = origin + ": efficiency";
  auto link_efficiency = [&](const std::string& key) {
    if (eff.find(key)) return number(eff, key, eff_where);
    if (!eff.find("link")) fail("{}: '{}' is missing, and no 'link' default (a positive number)", eff_where, key);
    return number(eff, "link", eff_where);
  };
  const double nvlink = link_efficiency("nvlink"), network = link_efficiency("network");
  Hardware hw;
  hw.name = name;
  hw.memory_bytes = number(*gpu, "memory_gb", where) * 1e9;
  hw.peak_flops = number(*gpu, "bf16_dense_tflops", where) * 1e12;
  if (gpu->find("fp8_dense_tflops")) hw.fp8_peak_flops = number(*gpu, "fp8_dense_tflops", where) * 1e12;
  // efficiency.memory: the share of the HBM bandwidth memory-bound kernels reach (1 when a file
  // states none, as the CPU hardware tests/multirank/memory_model.py writes).
  const double memory = eff.find("memory") ? number(eff, "memory", origin + ": efficiency") : 1.0;
  hw.memory_bytes_per_s = number(*gpu, "hbm_tb_per_s", where) * 1e12 * memory;
  hw.intra_node_bytes_per_s = number(*gpu, "nvlink_gb_per_s", where) * 1e9 * nvlink;
  hw.inter_node_bytes_per_s = number(*gpu, "network_gb_per_s", where) * 1e9 * network;
  hw.gemm_efficiency = number(eff, "gemm", origin + ": efficiency");
  hw.attention_efficiency = number(eff, "attention", origin + ": efficiency");
  return hw;
}

}  // namespace exatrain
