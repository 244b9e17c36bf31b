// exatrain config show CONFIG [--set k=v]...   the fully resolved run config
// exatrain config keys                          every key, its type, default and meaning
#include <CLI/CLI.hpp>

#include <iostream>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"

namespace exatrain {

namespace {

void register_config_command(CLI::App& app) {
  auto* config = app.add_subcommand("config", "Inspect run configs");
  config->require_subcommand(1);

  auto* show = config->add_subcommand("show", "Print the fully resolved config (preset, file, --set overrides)");
  static std::string path;
  static std::vector<std::string> overrides;
  show->add_option("CONFIG", path, "run config YAML")->required();
  show->add_option("--set", overrides, "override a key: --set train.steps=100 (repeatable)");
  show->callback([] { std::cout << resolved_yaml(load_run_config(path, overrides)); });

  auto* keys = config->add_subcommand("keys", "List every config key with its type, default and meaning");
  keys->callback([] {
    for (const auto& line : config_key_docs()) std::cout << line << "\n";
  });
}

CommandRegistration registration("config", 10, register_config_command);

}  // namespace

}  // namespace exatrain
