#!/usr/bin/env bash
# The GPU-machine run behind VERIFICATION.md: build ops._C with CUDA, run ops.check and the test suite,
# then the benchmark. Writes everything under ${OUT:-gpu-out}. Run from the repo root.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" >> "$OUT/gpu.txt"
cat "$OUT/gpu.txt"
{ time python3 -m ops.build; } > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
tail -3 "$OUT/build.log"
python3 -m ops.check --all ${CHECK_ARGS:-} --json > "$OUT/check.json"; echo "ops.check exit $?"
python3 -m ops.check --all ${CHECK_ARGS:-} 2>/dev/null | grep -E "cuda|->"
python3 benchmarks/probe_errors.py 2>&1 | tee "$OUT/probe.txt"
python3 -m pytest ${PYTEST_TARGETS:-tests/torch tests/test_declaration.py tests/test_shape_rule.py tests/test_extension.py} \
  -q -p no:cacheprovider -p no:logging > "$OUT/pytest.log" 2>&1; echo "pytest exit $?"; tail -5 "$OUT/pytest.log"
python3 benchmarks/bench_torch_ops.py --json "$OUT/bench.json" 2>&1 | grep -v Warning | tee "$OUT/bench.txt"
