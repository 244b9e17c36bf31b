#!/usr/bin/env bash
# The CUDA kernels as built, without a GPU:
#   - every kernels/*.cu compiles for sm_80 and sm_90a with no register spills and static shared
#     memory within 48 KiB per kernel (ptxas -v, the same flags as the build);
#   - build/bin/exatrain carries device code for both architectures, every tensor-core
#     attention kernel's SASS holds tensor-core instructions (HMMA) on both, the RoPE and
#     SwiGLU kernels are there for fp32 and bf16 on both, and so are the RMSNorm kernels (forward
#     and backward for each element-type pair and row kind, and the dweight reduction).
#   kernel_binaries.sh EXATRAIN_BIN
# cuobjdump and nvdisasm come from the venv (launch/requirements.txt).
set -u
BIN=$(realpath "${1:?usage: kernel_binaries.sh /path/to/exatrain}")
SRC=${EXATRAIN_SOURCE_DIR:?set EXATRAIN_SOURCE_DIR to the repository root}
NVCC=${CUDACXX:-/usr/local/cuda/bin/nvcc}
TOOLS=$SRC/.venv/lib/python3.11/site-packages/nvidia/cu13/bin
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
pass() { echo "ok - $1"; }
fail() { echo "FAIL - $1: $2"; failures=$((failures + 1)); }

if [[ ! -x $NVCC ]]; then
  echo "skip - no nvcc at $NVCC: this build has no CUDA kernels"
  exit 0
fi

# 1. ptxas: spills and shared memory, per kernel and architecture.
for cu in "$SRC"/kernels/*.cu; do
  name=$(basename "$cu")
  if ! "$NVCC" -std=c++17 -O3 -I"$SRC" -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a \
      -Xptxas -v -c "$cu" -o "$T/$name.o" >"$T/$name.log" 2>&1; then
    fail "$name compiles" "$(tail -5 "$T/$name.log")"
    continue
  fi
  python3 - "$T/$name.log" "$name" <<'PY' && pass "$name: no spills, shared memory within 48 KiB (sm_80, sm_90a)" || fail "$name ptxas" "see above"
import re, sys
text, name = open(sys.argv[1]).read(), sys.argv[2]
kernels = re.findall(r"Compiling entry function '([^']+)' for '(sm_\w+)'(.*?)(?=Compiling entry function|\Z)", text, re.S)
assert kernels, f"{name}: ptxas printed no kernel ({text[:300]})"
bad = []
for fn, arch, info in kernels:
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", info)]
    smem = sum(int(x) for x in re.findall(r"(\d+) bytes smem", info))
    regs = re.search(r"Used (\d+) registers", info)
    print(f"  {arch} {fn[:70]}: {regs.group(1) if regs else '?'} registers, spills {spills}, static smem {smem}")
    if any(spills):
        bad.append(f"{fn} on {arch} spills {spills}")
    if smem > 48 * 1024:
        bad.append(f"{fn} on {arch} uses {smem} bytes of static shared memory")
assert not bad, "; ".join(bad)
PY
done

# 2. The binary's device code and the tensor cores in its attention kernels.
if [[ ! -x $TOOLS/cuobjdump || ! -x $TOOLS/nvdisasm ]]; then
  fail "cuobjdump and nvdisasm in the venv" "missing under $TOOLS: run launch/setup.sh"
else
  elf=$("$TOOLS/cuobjdump" --list-elf "$BIN" 2>&1)
  for arch in sm_80 sm_90a; do
    grep -q "\.$arch\.cubin" <<<"$elf" && pass "exatrain holds $arch device code" || fail "exatrain $arch cubin" "$elf"
  done
  NVDISASM_PATH=$TOOLS/nvdisasm PATH=$TOOLS:$PATH "$TOOLS/cuobjdump" --dump-sass "$BIN" >"$T/sass.txt" 2>&1
  python3 - "$T/sass.txt" <<'PY' && pass "every tensor-core attention kernel uses HMMA on sm_80 and sm_90a" || fail "HMMA" "see above"
import re, sys
text = open(sys.argv[1]).read()
counts = {}  # (arch, function) -> HMMA count
arch = None
fn = None
for line in text.splitlines():
    m = re.search(r"arch = (sm_\w+)", line)
    if m:
        arch = m.group(1)
    m = re.search(r"Function : (\S+)", line)
    if m:
        fn = m.group(1)
        counts.setdefault((arch, fn), 0)
    elif fn and "HMMA" in line:
        counts[(arch, fn)] += 1
attention = {k: v for k, v in counts.items() if re.search(r"flash_attention_(fwd|bwd)_kernel", k[1])}
for (a, f), n in sorted(attention.items()):
    print(f"  {a} {f}: {n} HMMA")
assert {a for a, _ in attention} >= {"sm_80", "sm_90a"}, f"attention kernels not found for both archs: {sorted(attention)}"
assert all(n > 0 for n in attention.values()), "an attention kernel has no HMMA"
PY
  python3 - "$T/sass.txt" <<'PY' && pass "the RoPE and SwiGLU kernels (fp32, bf16) and the RMSNorm kernels (fwd, bwd: fp32, bf16 -> fp32, bf16; narrow, wide rows; dweight) are in the binary for sm_80 and sm_90a" || fail "RoPE/SwiGLU/RMSNorm kernels" "see above"
import re, sys
found = set()
arch = None
for line in open(sys.argv[1]):
    m = re.search(r"arch = (sm_\w+)", line)
    if m:
        arch = m.group(1)
    m = re.search(r"Function : (\S*(rope|swiglu)_kernelI([ft])E\S*)", line)
    if m:
        found.add((arch, m.group(2), m.group(3)))
    m = re.search(r"Function : \S*rmsnorm_(fwd|bwd)_kernelI([ft])([ft])Li(\d+)E", line)  # x, y types; columns per thread
    if m:
        found.add((arch, "rmsnorm_" + m.group(1), m.group(2) + m.group(3) + m.group(4)))
    if re.search(r"Function : \S*rmsnorm_dweight_kernel", line):
        found.add((arch, "rmsnorm_dweight", ""))
archs = ("sm_80", "sm_90a")
want = {(a, k, t) for a in archs for k in ("rope", "swiglu") for t in "ft"}  # f: float, t: uint16_t (bf16)
want |= {(a, "rmsnorm_" + k, t + n) for a in archs for k in ("fwd", "bwd") for t in ("ff", "tf", "tt") for n in ("4", "16")}
want |= {(a, "rmsnorm_dweight", "") for a in archs}
print(f"  found {len(found)} of them: {sorted(found)}")
assert want <= found, f"missing {sorted(want - found)}"
PY
fi

echo
if ((failures > 0)); then
  echo "# $failures case(s) failed"
  exit 1
fi
echo "# all cases passed"
