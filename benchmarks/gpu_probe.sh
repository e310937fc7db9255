#!/usr/bin/env bash
# Build ops._C with CUDA, probe the bad-input paths one per process, and on a crash print a native
# backtrace with cuda-gdb (the GPU image has no gdb). Then the test suite.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
python3 -m ops.build > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
python3 benchmarks/probe_errors.py 2>&1 | tee "$OUT/probe.txt"
if grep -q "rc= -11" "$OUT/probe.txt"; then
  cuda-gdb -batch -ex run -ex bt --args python3 -c "import torch, ops; ops.get_op('rms_norm')(torch.randn(4, 8), torch.randn(7))" 2>&1 | tail -40
fi
python3 -m pytest ${PYTEST_TARGETS:-tests/torch tests/test_declaration.py tests/test_shape_rule.py tests/test_extension.py} \
  -q -p no:cacheprovider -p no:logging > "$OUT/pytest.log" 2>&1; echo "pytest exit $?"; tail -5 "$OUT/pytest.log"
