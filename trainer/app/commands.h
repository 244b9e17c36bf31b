// Each subcommand lives in its own file and registers itself on the top-level CLI11 app.
#pragma once

namespace CLI {
class App;
}

namespace exatrain {

void register_config_command(CLI::App& app);
void register_model_command(CLI::App& app);
void register_logits_command(CLI::App& app);
void register_train_command(CLI::App& app);
void register_bench_command(CLI::App& app);

// Applies --threads (0 keeps the default: all cores).
void set_compute_threads(int threads);

}  // namespace exatrain
