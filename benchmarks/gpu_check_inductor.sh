#!/usr/bin/env bash
# The H100 run behind VERIFICATION.md's Inductor entry (issue 22, item 4). From the repo root, on a CUDA machine:
#   OUT=<dir> bash benchmarks/gpu_check_inductor.sh
# 1. ops._C with every library op (opforge::rms_norm's hand-written CUDA kernel is what the benchmark compares with;
#    a partial build would stop the pytest step at its start);
# 2. examples/inductor_ops (a copy): its three native libraries, the CUDA kernels of indops::scale_shift and
#    indops::gated_rms_norm captured from Inductor on this machine's torch and compiled ahead of time;
# 3. ops.check of both (every stage: torch.cuda, opcheck[cuda], trt.enqueue, triton.aot/linked);
# 4. benchmarks/bench_inductor.py with the default configs, then ops.tune of both, a rebuild, the benchmark again;
# 5. the pytest files of the Inductor work.
# STEPS=a runs 1-4 up to the default-config benchmark (STEPS=check: the check only), STEPS=b the rest (one device call each fits 10 minutes; b
# reuses a's builds under build/gpu-inductor while the machine is warm, and rebuilds them otherwise).
set -uo pipefail
STEPS=${STEPS:-a b}; has() { [[ " $STEPS " == *" $1 "* ]]; }
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
export OPFORGE_TRT_CUDA_ARCHS=${OPFORGE_TRT_CUDA_ARCHS:-90} TRT_INCLUDE_DIR=${TRT_INCLUDE_DIR:-$PWD/build/trt-headers/include}
ROOT=$PWD; WORK=$ROOT/build/gpu-inductor; EX=$WORK/inductor_ops
[ -d "$EX" ] || { mkdir -p "$WORK" && cp -r examples/inductor_ops "$WORK/"; }
export PYTHONPATH=$ROOT:$EX${PYTHONPATH:+:$PYTHONPATH}
log() { echo "== $* ($(date -u +%T))"; }
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
  git log --oneline -1; date -u; } > "$OUT/log.txt"
{
log build ops._C; OPFORGE_TRT=0 python3 -m ops.build 2>&1 | tail -2
cd "$EX"
log build indops; for argv in "ops.build --package indops" "ops.ort.build --package indops" "ops.build --trt --package indops"; do
  t0=$SECONDS; python3 -m $argv 2>&1 | grep -v "^ *$" | tail -3; echo "$((SECONDS - t0)) s: $argv"; done
cat build/opforge/indops/inductor/indops_gated_rms_norm/capture.json 2>/dev/null | head -30
if has a || has check; then log check; python3 -m ops.check indops::scale_shift indops::gated_rms_norm indops::softmax indops::scale_shift_cuda --package indops --json > "$OUT/check.json" 2> "$WORK/check.err"
echo "ops.check exit $?"; grep -ciE "warn" "$WORK/check.err"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); [print(op, row['stage'], row['status'], row['detail'][:160]) for op, rows in r['ops'].items() for row in rows if row['status'] != 'pass' or 'cuda' in row['stage'] or 'enqueue' in row['stage'] or 'triton' in row['stage']]" "$OUT/check.json"
fi
cd "$ROOT"
if has a; then log bench default; timeout 300 python3 benchmarks/bench_inductor.py --out "$OUT/bench_default.json" | cut -c1-400; fi
if has b; then
cd "$EX"
# Each table written changes the package's fingerprint: rebuild before the next op is timed.
log tune; for op in indops::scale_shift indops::gated_rms_norm; do timeout 300 python3 -m ops.tune $op --package indops 2>&1 | tail -2
  python3 -m ops.build --package indops 2>&1 | tail -1; done
cp indops/csrc/gated_rms_norm/gated_rms_norm_triton_tuned.json "$OUT/" 2>/dev/null; cp indops/csrc/scale_shift/scale_shift_triton_tuned.json "$OUT/" 2>/dev/null
python3 -m ops.build --package indops 2>&1 | tail -1
cd "$ROOT"
log bench tuned; timeout 300 python3 benchmarks/bench_inductor.py --out "$OUT/bench_tuned.json" | cut -c1-400
log pytest; timeout 500 python3 -m pytest -q -p no:cacheprovider -p no:logging -o addopts= --tb=short ${PYTEST_TARGETS:-tests/native tests/examples/test_inductor_ops.py tests/examples/test_triton_ops.py} 2>&1 | grep -E "^E |Error|passed|failed" | tail -40
fi
log done
} >> "$OUT/log.txt" 2>&1
tail -c 11000 "$OUT/log.txt"
