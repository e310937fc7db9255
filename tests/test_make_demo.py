"""The Makefile's `make demo`: it builds and checks DEMO_OPS only (a partial build), so DEMO_OPS must be every op
example (a) (examples/segmentation.py) calls, forward and backward; and the demo's steps are the ones the README
describes, ending with the time table."""

import importlib.util
import re
from pathlib import Path

from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]


def makefile() -> str:
    return (ROOT / "Makefile").read_text()


def demo_ops() -> list[str]:
    text = makefile().replace("\\\n", " ")
    return re.search(r"^DEMO_OPS\s*:=\s*(.*)$", text, re.M).group(1).split()


class OpforgeCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "opforge":
            self.seen.add(f"opforge::{func._schema.name.split('::')[1]}")
        return func(*args, **(kwargs or {}))


def test_demo_ops_are_the_ops_example_a_calls_forward_and_backward():
    spec = importlib.util.spec_from_file_location("opforge_example_segmentation", ROOT / "examples" / "segmentation.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, inputs = example.make(small=True)
    (image,) = inputs(1)
    with OpforgeCalls() as calls:
        model(image.requires_grad_()).sum().backward()
    called = {name for name in calls.seen if not name.endswith("_opforge_backward")}  # the glue's own helper
    assert called == set(demo_ops()), called


def test_demo_builds_checks_and_runs_only_demo_ops_then_prints_the_table():
    recipe = makefile().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "tools/timed_steps.py" in recipe  # the table ends the run
    assert "$(MAKE) --no-print-directory deps" in recipe  # no pip install -e . (it builds every op)
    assert "-m ops.build --ops $(subst $(space),$(comma),$(DEMO_OPS))" in recipe
    assert "$(PY) -m ops.check --quick $(DEMO_OPS)" in recipe and "$(PY) -m ops.check --all" not in recipe
    assert recipe.index("ops.build --ops") < recipe.index("ops.build --trt") < recipe.index("ops.ort.build")
    assert recipe.rstrip().endswith('"$(PY) examples/segmentation.py"')
    build = makefile().split("\nbuild:", 1)[1].split("\n\n", 1)[0]
    assert "--ops" not in build  # make build (and make test after it) builds every op
