# Shared helpers of the end-to-end CLI tests (sourced after T and TIMEOUT are set):
#   pass NAME / fail NAME DETAILS     count and print a case
#   run CMD...                        runs with a timeout; sets $rc; output in $T/stdout, $T/stderr
#   expect_ok NAME [SUBSTRING...] -- CMD...
#                                     exit 0 and stdout holds every SUBSTRING; returns 1 otherwise
#   expect_fail NAME SUBSTRING... -- CMD...
#                                     exit 1 and stderr exactly one "exatrain: error: ..." line
#                                     holding every SUBSTRING (no crash, no internal error)
#   expect_absent NAME PATH           a failed command wrote nothing at PATH
# $failures counts the failed cases; each script reports it and sets its exit code.

failures=0
pass() { echo "ok - $1"; }
fail() {
  local details=${2//$'\n'/ | }
  ((${#details} > 500)) && details="${details:0:500}..."
  echo "FAIL - $1: $details"
  failures=$((failures + 1))
}

run() {
  rc=0
  timeout -k 10 "$TIMEOUT" "$@" >"$T/stdout" 2>"$T/stderr" || rc=$?
}

expect_ok() {
  local name=$1 subs=() s
  shift
  while [[ $# -gt 0 && $1 != -- ]]; do subs+=("$1"); shift; done
  shift
  run "$@"
  if ((rc != 0)); then fail "$name" "exit code $rc; stderr: $(tail -n 5 "$T/stderr")"; return 1; fi
  for s in "${subs[@]}"; do
    if ! grep -qF -- "$s" "$T/stdout"; then fail "$name" "stdout lacks '$s': $(head -c 400 "$T/stdout")"; return 1; fi
  done
  pass "$name"
}

expect_fail() {
  local name=$1 subs=() err lines s
  shift
  while [[ $# -gt 0 && $1 != -- ]]; do subs+=("$1"); shift; done
  shift
  run "$@"
  err=$(<"$T/stderr")
  lines=$(grep -c '' "$T/stderr")
  if ((rc == 124)); then fail "$name" "timed out after ${TIMEOUT}s"; return; fi
  if ((rc > 128)); then fail "$name" "killed by signal $((rc - 128)); stderr: $err"; return; fi
  if ((rc != 1)); then fail "$name" "exit code $rc, expected 1; stderr: $err"; return; fi
  if ((lines != 1)); then fail "$name" "stderr has $lines lines, expected 1: $err"; return; fi
  if [[ $err != "exatrain: error: "* ]]; then fail "$name" "stderr does not start with 'exatrain: error: ': $err"; return; fi
  for s in "internal error" "terminate called" "Exception raised from" "core dumped"; do
    if grep -qF -- "$s" "$T/stderr"; then fail "$name" "stderr has '$s': $err"; return; fi
  done
  for s in "${subs[@]}"; do
    if ! grep -qF -- "$s" "$T/stderr"; then fail "$name" "stderr lacks '$s': $err"; return; fi
  done
  pass "$name"
}

expect_absent() {
  if [[ -e $2 ]]; then fail "$1" "$2 exists: $(ls -A "$2" 2>/dev/null | tr '\n' ' ')"; else pass "$1"; fi
}
