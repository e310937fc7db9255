#!/usr/bin/env bash
# The GPU-machine run behind VERIFICATION.md. From the repo root, on a machine with CUDA torch + nvcc:
#   OUT=<dir> bash benchmarks/gpu_verify.sh
# Builds ops._C with CUDA kernels and the TensorRT plugin library (headers from TRT_INCLUDE_DIR, or
# build/trt-headers made by `python -m ops.trt.headers`), then: the bad-input probe, the whole test
# suite, `ops.check --all`, and the benchmark. Logs and JSON land in $OUT.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export OPFORGE_TRT_CUDA_ARCHS=${OPFORGE_TRT_CUDA_ARCHS:-90} TRT_INCLUDE_DIR=${TRT_INCLUDE_DIR:-$PWD/build/trt-headers/include}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  date -u; } | tee "$OUT/gpu.txt"
{ time OPFORGE_TRT=0 python3 -m ops.build; } > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
python3 -m ops.build --trt >> "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
tail -1 "$OUT/build.log"
python3 benchmarks/probe_errors.py 2>&1 | cut -c1-150 | tee "$OUT/probe.txt"
python3 -m pytest ${PYTEST_TARGETS:-tests} -q -p no:cacheprovider -p no:logging > "$OUT/pytest.log" 2>&1
echo "pytest exit $?"; grep -E "passed|failed" "$OUT/pytest.log" | tail -3; grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20
python3 -m ops.check --all --json > "$OUT/check.json" 2>/dev/null; echo "ops.check exit $?"
python3 -m ops.check --all 2>/dev/null | grep -E "cuda|enqueue|engine|FAIL|->" | cut -c1-200 | tee "$OUT/check.txt"
# The example user package (its own op package, extension and plugin library), built and checked on the GPU.
( cd examples/user_package && python3 -m ops.build --package mypkg.ops > "$OUT/user_build.log" 2>&1 \
  && python3 -m ops.build --trt --package mypkg.ops >> "$OUT/user_build.log" 2>&1 \
  && python3 -m ops.check --package mypkg.ops mypkg::softclip 2>/dev/null | cut -c1-200 | tee "$OUT/user_check.txt" ) \
  || tail -20 "$OUT/user_build.log"
if [ "${BENCH:-1}" = 1 ]; then
  python3 benchmarks/bench_torch_ops.py --json "$OUT/bench.json" 2>&1 | grep -v Warning | tee "$OUT/bench.txt"
fi
