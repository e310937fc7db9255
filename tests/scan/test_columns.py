"""Which exporter x opset columns a scan tries, and which one decides each opset."""

import pytest

from ops.core.errors import OpforgeError
from ops.scan.columns import plan_columns


def names(columns):
    return [(c.name, c.decides) for c in columns]


def test_both_tries_each_exporter_where_it_writes_the_opset_natively():
    assert names(plan_columns([17, 20])) == [("torchscript-17", True), ("torchscript-20", False), ("dynamo-20", True)]
    assert names(plan_columns([23, 11])) == [("torchscript-11", True), ("dynamo-23", True)]


def test_one_exporter_is_tried_at_every_opset_and_then_decides():
    assert names(plan_columns([17, 20], "dynamo")) == [("dynamo-17", True), ("dynamo-20", True)]
    assert names(plan_columns([20], "torchscript")) == [("torchscript-20", True)]


@pytest.mark.parametrize(
    "opsets, exporter, message",
    [
        ([], "both", "no opset"),
        ([24], "both", "outside 11-23"),
        ([21], "torchscript", "up to 20"),
        ([17], "onnxscript", "torchscript, dynamo or both"),
    ],
)
def test_bad_requests(opsets, exporter, message):
    with pytest.raises(OpforgeError, match=message):
        plan_columns(opsets, exporter)
