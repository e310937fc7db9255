"""The recorded onnx-tensorrt operator tables: parsed from docs/operators.md, traceable to a commit, and read
the way ops.scan reads them."""

import pytest

from ops.core.errors import OpforgeError
from ops.scan import tensorrt as trt
from ops.scan.record_trt_table import parse_operators_md, version_of

SNIPPET = """# Supported ONNX Operators

TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20.

| Operator                  | Supported  | Supported Types | Restrictions |
|---------------------------|------------|-----------------|--------------|
| Abs                       | Y          | FP32, FP16, BF16, INT32, INT64 |
| AffineGrid                | N          |
| Resize                    | Y          | FP32, FP16 | Supported resize modes: `nearest`, `linear`.<br />Antialiasing is not supported.|
| NonMaxSuppression         | Y [EXPERIMENTAL] | FP32, FP16 | `max_output_boxes_per_class` must be an initializer
"""


def test_parse_rows_with_and_without_trailing_pipes():
    table = parse_operators_md(SNIPPET)
    ops = table["operators"]
    assert table["opsets"] == [9, 20]
    assert ops["Abs"] == {"supported": True, "types": ["FP32", "FP16", "BF16", "INT32", "INT64"], "restrictions": ""}
    assert ops["AffineGrid"]["supported"] is False
    assert ops["Resize"]["restrictions"] == "Supported resize modes: nearest, linear.; Antialiasing is not supported."
    assert ops["NonMaxSuppression"]["restrictions"].startswith("[EXPERIMENTAL] max_output_boxes_per_class")
    assert version_of("release/10.1-GA") == "10.1"


def test_recorded_tables_name_their_source():
    assert trt.recorded_versions() == ["8.6", "10.0", "10.1"]
    table = trt.table_for()
    assert table.version == table.requested == "10.1"
    assert table.commit == "96e781103cfc4adf4a6bb557e94bac8e693f6f4c" and table.ref == "release/10.1-GA"
    assert table.source.endswith(f"{table.commit}/docs/operators.md")
    assert table.opsets == (9, 20)
    assert len(table.operators) == 196


def test_verdicts():
    table = trt.table_for("10.1")
    plugins = {("opforge", "rms_norm"): "libopforge_trt_plugins.so"}
    assert trt.verdict(table, "", "Conv", plugins).status == trt.SUPPORTED
    assert trt.verdict(table, "", "AffineGrid", plugins).status == trt.UNSUPPORTED
    assert trt.verdict(table, "", "RMSNormalization", plugins).note == "not in the TensorRT 10.1 table"
    resize = trt.verdict(table, "", "Resize", plugins)
    assert resize.status == trt.RESTRICTED and "Antialiasing is not supported" in resize.note
    assert trt.verdict(table, "opforge", "rms_norm", plugins).status == trt.PLUGIN
    assert trt.verdict(table, "other", "thing", plugins).status == trt.UNSUPPORTED


def test_a_newer_version_uses_the_newest_older_table_and_says_so():
    table = trt.table_for("10.14")
    assert (table.requested, table.version) == ("10.14", "10.1")
    assert "newest recorded table <= 10.14" in table.describe()
    assert trt.table_for("10.0").version == "10.0"
    with pytest.raises(OpforgeError, match="recorded: 8.6, 10.0, 10.1"):
        trt.table_for("8.5")
