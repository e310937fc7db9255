"""examples/mixed_model.py (conv -> rms_norm -> scaled_gelu -> linear) at opsets 11, 17, 20: exported,
checked, and run in ORT at batch 1, 3 and 8 against torch eager."""

import pytest


@pytest.mark.parametrize("opset", [11, 17, 20])
def test_mixed_model(opset, tmp_path, mixed_model):
    diffs = mixed_model.export_and_run(opset, tmp_path / "mixed.onnx")
    assert set(diffs) == {1, 3, 8}
    assert max(diffs.values()) < 1e-5, diffs
