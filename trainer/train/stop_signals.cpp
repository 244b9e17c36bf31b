#include "trainer/train/stop_signals.h"

#include <atomic>
#include <csignal>
#include <cstring>

namespace exatrain {

namespace {

// Lock-free, so setting it is async-signal-safe.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

void on_stop_signal(int signo) {
  int expected = 0;
  g_stop_signal.compare_exchange_strong(expected, signo);  // keeps the first
}

}  // namespace

void install_stop_signals() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a signal inside a read or write does not fail it with EINTR
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

int stop_signal() { return g_stop_signal.load(); }

void request_stop(int signo) { on_stop_signal(signo); }

const char* signal_name(int signo) {
  switch (signo) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    default: return "a signal";
  }
}

}  // namespace exatrain
