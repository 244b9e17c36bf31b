// SIGTERM and SIGUSR1 as requests to stop: the handler only records the signal (async-signal-
// safe); the trainer reads it at each step, agrees on it with every rank, finishes the step,
// writes a synchronous checkpoint and exits with kExitRequeue. Slurm sends SIGTERM at preemption
// and `scontrol requeue`, and SIGUSR1 `--signal=USR1@grace` before the time limit
// (launch/slurm/train.sbatch). Further signals while stopping change nothing: one stop, one
// checkpoint. SIGINT keeps its default (Ctrl-C ends at once).
#pragma once

namespace exatrain {

// The exit status of a run that stopped on a signal after saving: "requeue me". 75 is
// EX_TEMPFAIL (sysexits.h): a temporary failure, try again.
inline constexpr int kExitRequeue = 75;

// Installs the handlers (idempotent). Also ignores SIGXFSZ, so that a write beyond a file-size
// limit fails with EFBIG and is reported like a full disk instead of killing the process.
void install_stop_signals();

// The first stop signal received (SIGTERM or SIGUSR1), or 0.
int stop_signal();

// Records `signo` as if it had arrived (the test fault injection uses it).
void request_stop(int signo);

// "SIGTERM", "SIGUSR1", or "signal N".
const char* signal_name(int signo);

}  // namespace exatrain
