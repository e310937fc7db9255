"""ops/cli.py's end_process, which ends `python -m ops.build` and `python -m ops.ort.build` (gc.freeze, then
sys.exit: the collector's pass over torch's objects at exit was half a second of a no-change rebuild). The exit
status, the output and what runs at exit stay as they were."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


def test_status_output_and_exit_handlers_are_kept():
    code = (
        "import atexit, weakref\nfrom ops import cli\n"
        "class Held: pass\nheld = Held()\n"
        "weakref.finalize(held, print, 'finalized', flush=True)\n"
        "atexit.register(print, 'atexit', flush=True)\n"
        "print('result', end=' ')  # left in the buffer: flushed at exit\n"
        "cli.end_process(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.split() == ["result", "atexit", "finalized"] and done.stderr == ""


def test_the_build_commands_end_through_it():
    for module in ("ops.build", "ops.ort.build"):
        text = (ROOT / Path(*module.split("."))).with_suffix(".py").read_text()
        assert text.rstrip().endswith('if __name__ == "__main__":\n    cli.end_process(main())'), module
    done = subprocess.run(
        [sys.executable, "-m", "ops.ort.build", "--lst"], env=ENV, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 2 and "unrecognized arguments: --lst" in done.stderr and done.stdout == ""
