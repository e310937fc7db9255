"""Runs each bad-input case in its own subprocess and reports how it ended (exception type, or a
signal). Used to localise a crash seen only with one torch build."""

import subprocess
import sys

CASES = {
    "dtype_int": "rms_norm(torch.randn(4, 8).int(), torch.randn(8).int())",
    "shape_weight": "rms_norm(torch.randn(4, 8), torch.randn(7))",
    "shape_weight_nograd": "torch.ops.opforge.rms_norm.default(torch.randn(4, 8), torch.randn(7))",
    "shape_weight_inference": "exec('with torch.inference_mode(): torch.ops.opforge.rms_norm.default(torch.randn(4, 8), torch.randn(7))')",
    "rank_weight": "rms_norm(torch.randn(4, 8), torch.randn(2, 8))",
    "rank_x": "rms_norm(torch.tensor(1.0), torch.randn(1))",
    "choice": "scaled_gelu(torch.randn(3), 1.0, 'erf')",
    "value_error_cpp_direct": "torch.ops.aten.empty.memory_format([-1])",
}
for name, expr in CASES.items():
    code = (
        "import torch, ops\nrms_norm = ops.get_op('opforge::rms_norm')\nscaled_gelu = ops.get_op('opforge::scaled_gelu')\n"
        f"try:\n    {expr}\n    print('no error')\nexcept Exception as e:\n    print(type(e).__name__, str(e)[:160])\n"
    )
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True)
    tail = (r.stdout.strip() or r.stderr.strip()[-300:]).splitlines()
    print(f"{name:24s} rc={r.returncode:4d} {tail[-1] if tail else ''}", flush=True)
