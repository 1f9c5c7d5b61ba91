#!/usr/bin/env bash
# engram-kernels GPU check kit: one command that tells everything about a GPU machine that
# has a CUDA driver and nothing else (no Node, no npm, no network).
#
#   bash run.sh OUTDIR
#
# It prints the device facts, checks the CPU backend against the golden fixtures, runs
# the GPU suite (every CUDA op against the CPU backend),
# runs it again under compute-sanitizer (memcheck, racecheck, synccheck), runs the GPU
# benchmark with the PyTorch peer where python3 has torch, and writes OUTDIR/report.md,
# report.json, gpu.md, gpu.json, run.log and sanitizer.log. Exit status: 0 when every GPU
# test and sanitizer check passed (or, with no device visible, when the CPU half ran);
# non-zero otherwise.
#   KIT_BUDGET_S  seconds for the whole run (default 470); each step gets what is left
#   KIT_QUICK=1   tiny benchmark shapes (a check, not a measurement)
#   KIT_NO_PEER=1 no PyTorch peer
set -uo pipefail

KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: bash run.sh OUTDIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
OUT="$(cd "$1" && pwd)"
BUDGET="${KIT_BUDGET_S:-470}"
exec > >(tee "$OUT/run.log") 2>&1

left() { # seconds left for a step that would like $1 seconds, keeping $2 in reserve
  local l=$((BUDGET - SECONDS - ${2:-0}))
  ((l > $1)) && l=$1
  ((l < 5)) && l=5
  echo "$l"
}
say() { printf '\n== %s (%ss into the run)\n' "$*" "$SECONDS"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/engram-gpu-kit.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# The kit stays as it came; everything that runs or is written runs from a copy.
cp -a "$KIT/pkg" "$KIT/tests" "$KIT/canary" "$KIT/bench" "$KIT/fixtures" "$KIT/cache" "$KIT/runner.mjs" "$KIT/report.mjs" "$KIT/kit.json" "$WORK/"
export ENGRAM_CACHE_DIR="$WORK/cache"
export ENGRAM_KIT=1

unpack() { # archive -> file; xz where the machine has it, else python3's lzma
  case "$1" in
    *.xz)
      if command -v xz >/dev/null 2>&1; then xz -dc "$1" >"$2"
      elif command -v python3 >/dev/null 2>&1; then python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
      else echo "neither xz nor python3 is here to unpack $1" >&2; return 1
      fi ;;
    *.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
  esac
}

say "the kit's own Node.js"
NODE="$WORK/node"
if ! unpack "$KIT"/node.*z "$NODE" || ! chmod +x "$NODE" || ! "$NODE" --version; then
  echo "FAIL: the kit's node binary does not run here (glibc too old? wrong architecture: $(uname -m))"
  exit 3
fi
sed -n 's/^ *"\(builtFrom\|builtAt\|node\)": *"\(.*\)",\?$/kit \1: \2/p' "$KIT/kit.json"

say "device facts"
uname -a
GPUS_LISTED=0
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi || true
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv,noheader >"$WORK/smi.csv" 2>/dev/null || true
  GPUS_LISTED=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
else
  echo "nvidia-smi: not found"
fi
echo "GPUs listed by nvidia-smi: $GPUS_LISTED"

probe() {
  (cd "$WORK" && "$NODE" --input-type=module -e "
    const m = await import('./pkg/dist/index.js');
    console.log(JSON.stringify({ buildInfo: m.buildInfo(), devices: m.devices() }));") >"$WORK/probe.json" 2>"$WORK/probe.err"
}
needs_rebuild() {
  probe || return 0
  ((GPUS_LISTED > 0)) && grep -q '"cuda":false' "$WORK/probe.json" && return 0
  return 1
}
if needs_rebuild; then
  echo "the shipped addon does not load here, or was built without CUDA:"
  cat "$WORK/probe.err" "$WORK/probe.json" 2>/dev/null | tail -5
  say "rebuilding the addon here from the kit's sources (cmake, nvcc)"
  GEN=()
  command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
  if command -v cmake >/dev/null 2>&1 &&
    timeout "$(left 300)" cmake -S "$KIT/native" -B "$WORK/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DENGRAM_CUDA="$( ((GPUS_LISTED > 0)) && echo ON || echo AUTO)" \
      -DCMAKE_JS_INC="$KIT/native/include/node-api" -DNODE_ADDON_API_DIR="$KIT/native/include/node-addon-api" \
      -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$WORK/build/Release" >"$WORK/cmake.log" 2>&1 &&
    timeout "$(left 400)" cmake --build "$WORK/build" -j "$(nproc)" >>"$WORK/cmake.log" 2>&1; then
    cp "$WORK/build/Release/engram_kernels.node" "$WORK/pkg/build/Release/engram_kernels.node"
    echo "rebuilt in ${SECONDS}s of the run"
  else
    tail -30 "$WORK/cmake.log" 2>/dev/null
    echo "the rebuild failed (see above)"
  fi
  probe || { echo "FAIL: the addon does not load:"; cat "$WORK/probe.err"; }
fi
cat "$WORK/probe.json" 2>/dev/null
VISIBLE=0
grep -q '"devices":\[{' "$WORK/probe.json" 2>/dev/null && VISIBLE=1
if ((GPUS_LISTED > 0)); then
  # A GPU machine: a device the addon cannot see is a failure, not a skip.
  export ENGRAM_REQUIRE_GPU=1
fi
if ((VISIBLE == 0)); then
  REASON=$(sed -n 's/.*"deviceUnavailableReason":"\([^"]*\)".*/\1/p' "$WORK/probe.json" 2>/dev/null)
  echo
  echo "No CUDA device is visible to the addon: ${REASON:-the addon did not load}."
  echo "The GPU suite and the sanitizers have nothing to run on; the CPU half of the comparisons (the benchmark's CPU backend runs) still runs."
fi

say "the CPU backend against the golden fixtures (and the kit's own runner)"
(cd "$WORK" && ENGRAM_REQUIRE_GPU=0 timeout --kill-after=10 "$(left 90 260)" "$NODE" runner.mjs "$WORK/canary.json" canary/*.mjs)
echo "CPU suite exit status: $?"

say "the GPU suite (each CUDA op against the CPU backend and the reference)"
(cd "$WORK" && timeout --kill-after=10 "$(left 180 200)" "$NODE" runner.mjs "$WORK/tests.json" tests/*.mjs)
echo "suite exit status: $?"

say "compute-sanitizer"
SANITIZER=""
for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  if command -v "$c" >/dev/null 2>&1; then SANITIZER="$(command -v "$c")"; break; fi
done
: >"$WORK/sanitizers.tsv"
: >"$OUT/sanitizer.log"
if ((VISIBLE == 0)); then
  echo "skipped: no CUDA device is visible"
  printf 'all\t-\tskipped: no CUDA device\t0\t0\n' >>"$WORK/sanitizers.tsv"
elif [ -z "$SANITIZER" ]; then
  echo "skipped: compute-sanitizer not found"
  printf 'all\t-\tskipped: compute-sanitizer not found\t0\t0\n' >>"$WORK/sanitizers.tsv"
else
  export ENGRAM_GPU_SMALL=1
  TOOLS=(memcheck racecheck synccheck)
  for i in "${!TOOLS[@]}"; do
    tool=${TOOLS[$i]}
    # Share what is left (less the benchmark's reserve) between the tools still to run.
    per_tool=$(( (BUDGET - SECONDS - 190) / (${#TOOLS[@]} - i) ))
    ((per_tool < 20)) && per_tool=20
    tool_end=$((SECONDS + per_tool))
    for f in "$WORK"/tests/*.mjs; do
      name=$(basename "$f")
      t=$((tool_end - SECONDS))
      if ((t < 5)); then
        printf '%s\t%s\tnot run: out of time\t0\t0\n' "$tool" "$name" >>"$WORK/sanitizers.tsv"
        continue
      fi
      echo "--- $tool $name (up to ${t}s)" | tee -a "$OUT/sanitizer.log"
      t0=$SECONDS
      (cd "$WORK" && timeout --kill-after=10 "$t" "$SANITIZER" --tool "$tool" --error-exitcode 86 --print-limit 30 \
        --target-processes all "$NODE" "$f") >"$WORK/one.log" 2>&1
      rc=$?
      cat "$WORK/one.log" >>"$OUT/sanitizer.log"
      errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$WORK/one.log" | awk '{s+=$1} END {print s+0}')
      if ((rc == 0)); then status=pass
      elif ((rc == 86)) || ((errors > 0)); then status="errors found"
      elif ((rc == 124 || rc == 137)); then status="timed out"
      elif grep -qiE 'not supported|unsupported|unable to (attach|initialize)|Device not supported' "$WORK/one.log"; then status="refused by the tool"
      else status="tests failed under the tool (exit $rc)"
      fi
      echo "    $status ($errors errors, $((SECONDS - t0))s)"
      printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "$status" "$errors" "$((SECONDS - t0))" >>"$WORK/sanitizers.tsv"
    done
  done
  unset ENGRAM_GPU_SMALL
fi

say "the GPU benchmark (CUDA against the CPU backend and PyTorch)"
BENCH_ARGS=(--out "$OUT")
[ "${KIT_QUICK:-0}" = 1 ] && BENCH_ARGS+=(--quick)
[ "${KIT_NO_PEER:-0}" = 1 ] && BENCH_ARGS+=(--no-peer)
(cd "$WORK" && timeout --kill-after=10 "$(left 240 15)" "$NODE" bench/gpu.mjs "${BENCH_ARGS[@]}")
echo "benchmark exit status: $?"

say "report"
(cd "$WORK" && "$NODE" report.mjs "$WORK" "$OUT")
STATUS=$?
echo "kit exit status: $STATUS (${SECONDS}s in all)"
exit "$STATUS"
