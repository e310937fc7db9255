"""Ops that cannot be exported give one clear ExportError naming the op and the fix."""

import pytest
import torch

import ops
from ops.onnx import export_onnx


@pytest.fixture(scope="module")
def no_onnx_op():
    op_id = "opforge_test_onnx::host_only"
    if op_id in {o.id for o in ops.all_ops()}:
        return ops.get_op(op_id)

    @ops.register_op(
        op_id, inputs=[ops.Input("x", dtypes=("float32",))], outputs=[ops.Output("y")], kernels=None, onnx=False
    )
    def host_only(x):
        return x * 2

    return host_only


@pytest.fixture(scope="module")
def unknown_op():
    lib = torch.library.Library("opforge_unknown", "FRAGMENT")
    lib.define("mystery(Tensor x) -> Tensor")
    lib.impl("mystery", lambda x: x + 1, "CompositeExplicitAutograd")
    torch.library.register_fake("opforge_unknown::mystery", lambda x: torch.empty_like(x), lib=lib)
    yield torch.ops.opforge_unknown.mystery
    # the Library object is kept alive by the fixture for the module's tests


class Uses(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(torch.relu(x))


@pytest.mark.parametrize("opset", [17, 20])
def test_op_declared_without_onnx(no_onnx_op, opset):
    with pytest.raises(ops.ExportError) as info:
        export_onnx(Uses(no_onnx_op.torch_op), (torch.randn(2, 3),), opset=opset)
    text = str(info.value)
    assert "opforge_test_onnx::host_only" in text and "onnx=False" in text and "Fix:" in text
    assert "Traceback" not in text and len(text) < 600
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("opset", [17, 20])
def test_unknown_custom_op(unknown_op, opset, capfd):
    with pytest.raises(ops.ExportError) as info:
        export_onnx(Uses(unknown_op), (torch.randn(2, 3),), opset=opset)
    text = str(info.value)
    assert "opforge_unknown::mystery" in text and "ops.register_op" in text
    assert len(text) < 600
    assert "Torch IR graph" not in capfd.readouterr().out  # no exporter dump before our message


def test_cli_reports_user_errors(capsys, tmp_path):
    from ops.export import main

    assert main(["opforge::rms_norm", "-o", str(tmp_path / "r.onnx"), "--opset", "9"]) == 2
    assert "opset must be an int in 11-23" in capsys.readouterr().err
    assert main(["rms_norm", "-o", str(tmp_path / "r.onnx"), "--opset", "13", "--check-ort"]) == 0
    assert "opset 13" in capsys.readouterr().out
