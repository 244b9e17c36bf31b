// exatrain selftest --kernels [--json] [--threads N]
// Runs every fused-operator implementation this machine has against the ATen reference and
// prints one row per check; exits 1 if any error is above its bound (kernels/selftest.h).
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "kernels/selftest.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace {

struct SelftestOptions {
  bool kernels = false, json = false;
  int threads = 0;
};

void run_selftest(const SelftestOptions& o) {
  if (!o.kernels) fail("selftest: say what to test: --kernels");
  set_compute_threads(o.threads);
  const auto rows = ops::run_kernel_selftest();
  bool ok = true;
  for (const auto& r : rows) ok = ok && r.passed();
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows)
      out.push_back({{"op", r.op}, {"impl", r.impl}, {"shape", r.shape}, {"dtype", r.dtype},
                     {"max_error", r.max_error}, {"bound", r.bound}, {"passed", r.passed()},
                     {"impl_ms", r.impl_ms}, {"reference_ms", r.reference_ms}});
    std::cout << nlohmann::json{{"checks", out}, {"passed", ok}}.dump() << "\n";
  } else {
    std::cout << fmt::format("{:<18} {:<26} {:<24} {:<5} {:>10} {:>10} {:>10} {:>10}  {}\n", "operator",
                             "implementation", "shape", "dtype", "max error", "bound", "ms", "ref ms", "result");
    for (const auto& r : rows)
      std::cout << fmt::format("{:<18} {:<26} {:<24} {:<5} {:>10.2e} {:>10.2e} {:>10.2f} {:>10.2f}  {}\n", r.op,
                               r.impl, r.shape, r.dtype, r.max_error, r.bound, r.impl_ms, r.reference_ms,
                               r.passed() ? "ok" : "FAIL");
    std::cout << fmt::format("{} of {} checks passed; errors are relative to the largest reference value "
                             "(absolute below 1); the reference runs in float64\n",
                             std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.passed(); }),
                             rows.size());
  }
  if (!ok) throw ExitStatus{1};
}

void register_selftest_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("selftest", "Check this machine's kernels against the reference implementations");
  static SelftestOptions o;
  cmd->add_flag("--kernels", o.kernels, "every fused operator's implementations against ATen, on a few shapes");
  cmd->add_flag("--json", o.json, "print one JSON object");
  cmd->add_option("--threads", o.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([] { run_selftest(o); });
}

CommandRegistration registration("selftest", 95, register_selftest_command);

}  // namespace

}  // namespace exatrain
