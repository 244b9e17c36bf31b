#!/usr/bin/env bash
# exatrain set-up on Debian 12: apt packages, the Python venv (LibTorch + test judges),
# then configure and build into build/. Idempotent: a second run does nothing but check.
#   launch/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
say() { printf '[setup] %s\n' "$*"; }

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  openmpi-bin libopenmpi-dev
  libspdlog-dev libfmt-dev libprotobuf-dev protobuf-compiler libyaml-cpp-dev
  libcli11-dev libgtest-dev nlohmann-json3-dev libonig-dev libutf8proc-dev libicu-dev libssl-dev libxxhash-dev
  python3 python3-venv python3-dev
  # pgrep/pkill (tests that signal one rank), unshare/mount (the private tmpfs of tests/e2e/faults.sh)
  procps util-linux
  # Slurm for tests/slurm (a real single-node slurmctld + slurmd); srun --mpi=pmix starts Open
  # MPI ranks through PMIx, whose unversioned libpmix.so only libpmix-dev installs.
  slurm-wlm slurmctld slurmd slurm-client munge libpmix-dev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing apt packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  # Without systemd, package scripts start daemons through init scripts (munge's would start a
  # system munged, and a start that fails fails the install). Forbid service starts during this
  # install, as Docker images do; tests/slurm starts its own daemons.
  POLICY=/usr/sbin/policy-rc.d
  if [[ ! -d /run/systemd/system && ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv for LibTorch and the judges. The stamp holds the hash of the requirements.
VENV="$ROOT/.venv"
REQ="$ROOT/launch/requirements.txt"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating venv at .venv"
  /usr/bin/python3 -m venv "$VENV"
fi
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  say "installing Python packages (torch wheel is several GB the first time)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  cuda=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda)')
  nvcc_ver=$(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
  if [[ "$cuda" != "$nvcc_ver" ]]; then
    say "error: torch is built for CUDA $cuda but /usr/local/cuda is $nvcc_ver; pin a matching torch in $REQ"
    exit 1
  fi
  echo "$want" > "$VENV/.requirements.sha256"
fi

[[ "${1:-}" == "--no-build" ]] && exit 0

# Configure once, then build (ninja is quiet when nothing changed).
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [[ ! -f build/build.ninja ]]; then
  say "configuring build/"
  mkdir -p build
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython_EXECUTABLE="$VENV/bin/python" >build/configure.log 2>&1 \
    || { cat build/configure.log; exit 1; }
fi
JOBS=${EXATRAIN_JOBS:-$(nproc)}
before=$(stat -c %Y build/bin/exatrain 2>/dev/null || echo none)
out=$(cmake --build build -j "$JOBS" 2>&1) || { echo "$out"; exit 1; }
[[ "$(stat -c %Y build/bin/exatrain 2>/dev/null)" == "$before" ]] || say "built build/bin/exatrain"
