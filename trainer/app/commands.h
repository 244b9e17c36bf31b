// Each subcommand lives in its own file and registers itself here with a static
// CommandRegistration, so adding a command touches no shared list:
//
//   static CommandRegistration reg("train", 40, register_train_command);
//
// `order` sorts the commands in --help. The files are compiled into the exatrain executable
// (not a static library), so their registrations are always linked.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace exatrain {

struct CommandRegistration {
  using Register = void (*)(CLI::App&);
  CommandRegistration(std::string name, int order, Register fn);
};

struct RegisteredCommand {
  std::string name;
  int order;
  CommandRegistration::Register fn;
};
std::vector<RegisteredCommand>& registered_commands();

// Applies --threads (0 keeps the default: all cores).
void set_compute_threads(int threads);

}  // namespace exatrain
