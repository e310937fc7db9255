"""The batch model (ops/core/batch.py): which dim of an op varies between calls is inferred from the shape rules or
declared, and every input dim tied to it follows; ops.check.batching resizes samples along it."""

import pytest
import torch

from ops import Batch, DeclarationError, Input, Output, Sample, register_op
from ops.check.batching import BatchPlan, batched_inputs, resized


def declare(op_id, inputs, outputs, **extra):
    names = [i.name for i in inputs]
    ref = eval(f"lambda {', '.join(names)}: {names[0]}")  # the reference's signature must match the inputs
    return register_op(op_id, inputs=inputs, outputs=outputs, kernels=None, **extra)(ref)


def test_an_elementwise_op_is_batched_by_its_first_input(unique_id):
    op = declare(
        unique_id(),
        [Input("x"), Input("m", dtypes="like(x)", optional=True, shape="like(x)")],
        [Output("y", shape="like(x)", dtype="like(x)")],
    )
    assert op.decl.batch.dims == (("x", 0), ("m", 0)) and op.decl.batch.name == "batch"


def test_an_embedding_is_batched_by_its_indices_not_its_table(unique_id):
    op = declare(
        unique_id(),
        [
            Input("table", rank=2),
            Input("idx", dtypes=("int64",), rank=1),
            Input("weight", dtypes="like(table)", optional=True, shape="[idx.shape[0]]"),
        ],
        [Output("rows", shape="[idx.shape[0], table.shape[1]]", dtype="like(table)")],
    )
    assert op.decl.batch.dims == (("idx", 0), ("weight", 0))
    sample = Sample(torch.randn(7, 3), torch.tensor([6, 0, 2]), torch.ones(3))
    dims = batched_inputs(op.decl, sample)
    assert dims == {1: 0, 2: 0}
    table, idx, weight = resized(sample.inputs, dims, 8)
    assert table.shape == (7, 3) and idx.tolist() == [6, 0, 2, 6, 0, 2, 6, 0] and weight.shape == (8,)


def test_roi_style_ops_vary_their_rois(unique_id):
    op = declare(
        unique_id(),
        [Input("features", rank=4), Input("rois", dtypes="like(features)", shape="[rois.shape[0], 5]")],
        [Output("y", shape="[rois.shape[0], features.shape[1], 7, 7]", dtype="like(features)")],
    )
    assert op.decl.batch.dims == (("rois", 0),)
    plan = BatchPlan(
        Sample(torch.randn(2, 3, 8, 8), torch.rand(4, 5)),
        batched_inputs(op.decl, Sample(torch.randn(2, 3, 8, 8), torch.rand(4, 5))),
    )
    assert plan.dynamic == {1: {0: "batch"}} and plan.size == 4
    assert [t.shape[0] for t in plan.inputs(3)] == [2, 3]


def test_a_batch_dim_other_than_dim_0_and_a_declared_name(unique_id):
    op = declare(
        unique_id(),
        [Input("q", rank=3), Input("k", dtypes="like(q)", shape="[q.shape[0], q.shape[1], 4]")],
        [Output("y", shape="like(q)", dtype="like(q)")],
        batch=Batch("q.shape[1]", name="queries"),
    )
    assert op.decl.batch.dims == (("q", 1), ("k", 1)) and op.decl.batch.how == "declared"
    sample = Sample(torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    plan = BatchPlan(sample, batched_inputs(op.decl, sample), "queries")
    assert plan.dynamic == {0: {1: "queries"}, 1: {1: "queries"}}
    assert [tuple(t.shape) for t in plan.inputs(5)] == [(2, 5, 4), (2, 5, 4)]
    assert plan.dim_names(op.decl) == {"q": [2, "queries", 4], "k": [2, "queries", 4]}


def test_a_declared_tie_where_no_shape_rule_states_it(unique_id):
    op = declare(
        unique_id(),
        [Input("x"), Input("w", dtypes="like(x)", batch_dim=0)],
        [Output("y", shape="like(x)", dtype="like(x)")],
    )
    assert op.decl.batch.dims == (("x", 0), ("w", 0))


def test_an_op_without_a_batch(unique_id):
    op = declare(unique_id(), [Input("x")], [Output("y", shape="like(x)", dtype="like(x)")], batch=None)
    assert op.decl.batch.dims == () and batched_inputs(op.decl, Sample(torch.ones(3))) is None
    plan = BatchPlan(Sample(torch.ones(3)), {})
    assert plan.dynamic == {} and plan.sizes((1, 3, 8)) == (None,) and plan.inputs(None)[0].shape == (3,)


def test_a_batch_used_inside_arithmetic_is_not_inferred_and_cannot_be_declared(unique_id):
    inputs = [Input("x"), Input("z", dtypes="like(x)", shape="[2 * x.shape[0]]")]
    op = declare(unique_id(), inputs, [Output("y", shape="like(x)", dtype="like(x)")])
    assert op.decl.batch.dims == () and "inside arithmetic" in op.decl.batch.how
    with pytest.raises(DeclarationError, match="field 'batch'.*inside arithmetic"):
        declare(unique_id(), inputs, [Output("y", shape="like(x)", dtype="like(x)")], batch="x.shape[0]")


@pytest.mark.parametrize("spec", ["x.shape[5]", "w.shape[0]", "2 * x.shape[0]", "nope", 3])
def test_a_bad_batch_declaration_names_the_field_and_the_fix(unique_id, spec):
    with pytest.raises(DeclarationError, match="field 'batch'") as e:
        declare(
            unique_id(),
            [Input("x", rank=2), Input("w", dtypes="like(x)", optional=True)],
            [Output("y", shape="like(x)", dtype="like(x)")],
            batch=spec,
        )
    assert "Fix:" in str(e.value) or "fix" in str(e.value).lower()


def test_a_sample_without_its_batch_input_has_no_batch(unique_id):
    op = declare(
        unique_id(),
        [Input("x"), Input("m", dtypes="like(x)", optional=True, shape="like(x)")],
        [Output("y", shape="like(x)", dtype="like(x)")],
    )
    assert batched_inputs(op.decl, Sample(torch.ones(0, 3))) is None  # empty: nothing to repeat
    assert batched_inputs(op.decl, Sample(torch.ones(2, 3), None)) == {0: 0}
