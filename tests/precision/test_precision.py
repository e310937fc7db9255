"""ops.precision on examples/fp16_overflow.py's designed model: report, exhaustive check that every node that
overflows in half is flagged, mixed export validity (explicit Casts, consistent types, ORT runs it, flagged
nodes float32), FLOP fraction, the error on held-out inputs the plan was not made on, CLI errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

pytest.importorskip("onnxruntime")

from examples.fp16_overflow import calibration, held_out, make  # noqa: E402
from ops.precision import analyze, plan_mixed  # noqa: E402
from ops.precision.formats import half_format  # noqa: E402
from ops.precision.node_types import FLOAT, FLOAT16, elem_types, half_slots  # noqa: E402
from ops.precision.onnx_nodes import run_node_in_half  # noqa: E402


@pytest.fixture(scope="module")
def planned():
    import ops

    ops.load_extension()
    model, args = make(tokens=16)
    analysis = analyze(model, args, calibration=calibration(make, 2, tokens=16), opset=17)
    mixed = plan_mixed(analysis)
    return analysis, mixed


# What overflows in float16, from make()'s construction: the residual stream is |x| ~ 400 (the offset is set
# to +-400), so in each hand-written norm, x * rsqrt(x.pow(2).mean(-1) + eps) * weight, every value from the
# square up to the square root is ~400^2 = 1.6e5 > 65504: Pow, ReduceMean, Add (+eps) and Sqrt (rsqrt is
# exported as Sqrt then Reciprocal; the Reciprocal's input is back at ~400 and the Muls are ~1 and ~400).
NORM_CHAIN = ("Pow", "ReduceMean", "Add", "Sqrt")


def plain_norms(model) -> list[str]:
    """The module paths of make()'s hand-written norms (blocks.0.norm and final_norm with the default 2 blocks)."""
    from examples.fp16_overflow import PlainRMSNorm

    return [path for path, m in model.named_modules() if isinstance(m, PlainRMSNorm)]


def expected_overflow(model) -> list[tuple[str, str]]:
    """(module, op type) of every node that must be flagged, one per node."""
    return sorted((path, op) for path in plain_norms(model) for op in NORM_CHAIN)


def test_report_flags_the_hand_written_norm_and_ranks_it_first(planned):
    analysis, _ = planned
    report = analysis.report
    model, _ = make(tokens=16)
    want = expected_overflow(model)
    assert len(want) == 8 and plain_norms(model) == ["blocks.0.norm", "final_norm"]
    flagged = report.flagged_nodes()
    assert sorted((f.module, f.op_type) for f in flagged) == want  # exactly these nodes, nothing else
    assert all(f.flags == ["overflow"] and f.error == float("inf") for f in flagged)
    assert not any(f.flags for f in report.nodes if "rms_norm" in f.op_type)  # float32 accumulator: safe in half
    # The ranking: the 8 overflowing nodes first (same flag, same inf error, then by max |x|), then the rest,
    # unflagged; the table lists them in that order.
    ranked = report.ranked_nodes()
    top = ranked[: len(want)]
    assert {f.node for f in top} == {f.node for f in flagged}
    assert [f.max_abs for f in top] == sorted((f.max_abs for f in top), reverse=True)
    assert all(f.max_abs > 65504 for f in top) and not any(f.flags for f in ranked[len(want) :])
    table = report.table(rows=len(ranked)).splitlines()
    start = table.index("ONNX nodes (ranked by risk)") + 3  # after the title, the header and the rule
    rows = table[start : table.index("", start)]
    assert [line.split()[2] for line in rows] == [f.node for f in ranked]
    # Modules: each hand-written norm returns zeros in half (error 1), and so does the whole model, whose
    # head reads final_norm; blocks.0 adds the broken norm's branch to a residual of |x| ~ 400 that carries
    # its output, so it stays within the budget. The two norms rank first.
    assert {f.module for f in report.flagged_modules()} == {"blocks.0.norm", "final_norm", ""}
    from ops.precision.report import risk_key

    modules = sorted(report.modules, key=risk_key)
    assert {f.module for f in modules[:2]} == {"blocks.0.norm", "final_norm"}
    assert all(f.error == pytest.approx(1.0) for f in modules[:2])


def test_every_node_that_overflows_alone_in_half_is_flagged(planned):
    """Exhaustive: each node with float tensors runs alone in half; any non-finite output where float32 is
    finite must be a flagged node."""
    analysis, _ = planned
    m, fmt = analysis.onnx_model, half_format("float16")
    types = elem_types(m)
    flagged = {f.node for f in analysis.report.flagged_nodes()}
    weights = {}
    from ops.precision.onnx_nodes import constant_values

    env = {**constant_values(m), **analysis.runs[0]}
    overflowing = set()
    for node in m.graph.node:
        slots = half_slots(node, m, types)
        if slots is None or node.op_type == "Constant":
            continue
        outs = run_node_in_half(node, m, env, slots, fmt)
        for k, name in enumerate(node.output):
            if k < len(outs) and outs[k].is_floating_point() and name in env:
                if not bool(torch.isfinite(outs[k]).all()) and bool(torch.isfinite(env[name]).all()):
                    overflowing.add(node.name)
    del weights
    assert overflowing, "the example must overflow somewhere"
    assert overflowing <= flagged


def test_mixed_graph_is_strongly_typed_and_runs_in_ort(planned):
    import onnx

    from ops.onnx import ort_session
    from ops.onnx.models import run_session
    from ops.precision.validate import type_problems

    analysis, mixed = planned
    onnx.checker.check_model(mixed, full_check=True)
    assert type_problems(mixed) == []
    types = elem_types(mixed)
    for node in mixed.graph.node:  # only Cast nodes change a dtype
        if node.op_type in ("Cast",):
            continue
        floats = {types[n] for n in list(node.input) + list(node.output) if n and types.get(n) in (FLOAT, FLOAT16)}
        if node.op_type not in ("Shape",):
            assert len(floats) <= 1, (node.name, floats)
    assert all(types[i.name] == FLOAT for i in mixed.graph.input)
    assert all(types[o.name] == FLOAT for o in mixed.graph.output)
    assert all(t.data_type != FLOAT for t in mixed.graph.initializer if t.dims and len(t.dims) == 2)  # weights half
    out = run_session(ort_session(mixed), analysis.samples[0])[0]
    assert torch.isfinite(out).all()


def test_flagged_nodes_stay_float32_and_most_flops_are_half(planned):
    analysis, mixed = planned
    types = elem_types(mixed)
    by_name = {n.name: n for n in mixed.graph.node}
    for f in analysis.report.flagged_nodes():
        node = by_name[f.node]
        assert all(types[o] == FLOAT for o in node.output if o and types.get(o) in (FLOAT, FLOAT16)), f.node
    mx = analysis.report.mixed
    assert mx["half_flop_fraction"] >= 0.9
    assert mx["met_target"] and mx["rel_l2"] <= mx["calibration_target"] == 0.5e-3
    rms = [n for n in mixed.graph.node if n.op_type == "rms_norm"]
    assert rms and all(types[n.output[0]] == FLOAT16 for n in rms)  # declared float16: takes half


def test_held_out_inputs_meet_the_target_in_ort_and_torch_half(planned):
    """Three inputs from seeds the plan never saw: rel_l2 <= 1e-3 against float32 (ORT) in ORT and with torch
    half kernels, all finite."""
    from ops.onnx import ort_session
    from ops.onnx.models import run_session
    from ops.precision.formats import rel_l2
    from ops.precision.torch_eval import TorchGraphRunner

    analysis, mixed = planned
    inputs = held_out(make, tokens=16)
    assert len(inputs) >= 3
    planned_on = analysis.samples
    assert not any(torch.equal(x[0], s[0]) for x in inputs for s in planned_on)
    s32, smixed, runner = ort_session(analysis.onnx_model), ort_session(mixed), TorchGraphRunner(mixed)
    for x in inputs:
        ref = run_session(s32, x)[0].float()
        got_ort = run_session(smixed, x)[0].float()
        got_torch = runner.run({mixed.graph.input[0].name: x[0]})[mixed.graph.output[0].name].float()
        assert torch.isfinite(got_ort).all() and torch.isfinite(got_torch).all()
        assert rel_l2(got_ort, ref) <= 1e-3 and rel_l2(got_torch, ref) <= 1e-3, (
            rel_l2(got_ort, ref),
            rel_l2(got_torch, ref),
        )


def test_export_onnx_precision_argument(tmp_path):
    import ops
    from ops.core.errors import ExportError

    model, args = make(tokens=8)
    m = ops.export_onnx(model, args, tmp_path / "m.onnx", opset=17, precision="mixed-float16")
    assert (tmp_path / "m.onnx").is_file()
    assert any(p.key == "opforge.precision" for p in m.metadata_props)
    with pytest.raises(ExportError, match="precision must be one of"):
        ops.export_onnx(model, args, opset=17, precision="fp16")


def test_cli_errors_are_one_line(capsys, tmp_path):
    from ops.precision.__main__ import main

    assert main(["no_colon_here"]) == 2
    assert "must be 'package.module:function'" in capsys.readouterr().err
    assert main(["examples.fp16_overflow:make", "--dtype", "float8"]) == 2
    assert "--dtype must be one of" in capsys.readouterr().err
    assert main(["examples.fp16_overflow:make", "--data", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and len(err.strip().splitlines()) == 1


def test_cli_json_and_plot(tmp_path, capsys):
    import json

    pytest.importorskip("matplotlib")
    from ops.precision.__main__ import main

    torch.save([(torch.randn(1, 64, 32),)], tmp_path / "data.pt")
    rc = main(
        [
            "examples.fp16_overflow:make",
            "--data",
            str(tmp_path / "data.pt"),
            "--json-out",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "r.png"),
            "--rows",
            "5",
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    model, _ = make()
    assert report["summary"]["flagged_nodes"] == 8 and report["mixed"]["half_flop_fraction"] >= 0.9
    assert sorted((n["module"], n["op_type"]) for n in report["nodes"] if n["flags"]) == expected_overflow(model)
    assert [n["flags"] for n in report["nodes"][:8]] == [["overflow"]] * 8  # the JSON lists nodes ranked
    assert all(n["error"] == float("inf") for n in report["nodes"][:8])  # inf stays inf (not None: not run)
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_a_cast_to_float_runs_in_half_as_a_cast_to_half():
    """A Cast whose output becomes half casts to half when run alone in half (the transformer example's
    attention mask goes through one)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT, name="cast")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    slots = half_slots(node, model, elem_types(model))
    assert slots is not None and slots.outputs == (0,)
    (out,) = run_node_in_half(node, model, {"x": torch.tensor([1, 70000, -3])}, slots, half_format("float16"))
    assert out.dtype == torch.float16
    assert out[0] == 1 and torch.isinf(out[1]) and out[2] == -3
    assert node.attribute[0].i == TensorProto.FLOAT  # the graph's own node is left as it was


def _matmul_relu_matmul():
    """x (4x8) -> MatMul -> Relu -> MatMul -> y: a float32 graph whose every node may take half."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = np.random.default_rng(0)
    w1 = numpy_helper.from_array(g.standard_normal((8, 8)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(g.standard_normal((8, 4)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        [w1, w2],
    )
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.checker.check_model(model)
    return model


def test_a_node_that_cannot_run_in_half_is_flagged_and_stays_float32(monkeypatch):
    """A node torch has no half kernel for (here Relu, whose handler is made to refuse half inputs the way a
    missing kernel does) is flagged no-half, ranked, shown with its reason, and kept float32 by the mixed
    plan; before, it only got a note and the plan put it in half."""
    import json

    from ops.precision.torch_eval import handlers

    relu = handlers()["Relu"]

    def relu_without_half(a, x):
        if x.dtype == torch.float16:
            raise RuntimeError("\"relu_cpu\" not implemented for 'Half'")
        return relu(a, x)

    monkeypatch.setitem(handlers(), "Relu", relu_without_half)
    model = _matmul_relu_matmul()
    analysis = analyze(None, (torch.randn(4, 8),), calibration=[(torch.randn(4, 8),)], modules=False, onnx_model=model)
    report = analysis.report
    by_node = {f.node: f for f in report.nodes}
    assert by_node["relu"].flags == ["no-half"] and by_node["relu"].error is None
    assert "not implemented for 'Half'" in by_node["relu"].no_half
    assert not by_node["mm1"].flags and not by_node["mm2"].flags
    assert report.ranked_nodes()[0].node == "relu"
    row = next(line for line in report.table().splitlines() if " relu " in line)
    assert row.startswith("no-half") and "a mixed export keeps it float32" in row and "'Half'" in row
    assert json.loads(json.dumps(report.to_json()))["nodes"][0]["no_half"] == by_node["relu"].no_half

    mixed = plan_mixed(analysis, target=0.1)
    assert report.mixed["kept_float32"] == {"relu": "no-half"}
    types = elem_types(mixed)
    relu_node = next(n for n in mixed.graph.node if n.name == "relu")
    assert types[relu_node.input[0]] == FLOAT and types[relu_node.output[0]] == FLOAT
    assert {types[n.output[0]] for n in mixed.graph.node if n.name in ("mm1", "mm2")} == {FLOAT16}


def test_a_module_that_cannot_run_in_half_is_flagged():
    """torch.linalg.inv has no half kernel on the CPU: the module is flagged no-half with torch's reason."""
    from ops.precision.report import PrecisionReport
    from ops.precision.torch_modules import analyze_modules

    class Inverse(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x) + x

    a = torch.randn(3, 3) + 3 * torch.eye(3)
    (f,) = analyze_modules(Inverse(), [(a,)], half_format("float16"), budget=1e-3, underflow_limit=0.01)
    assert f.flags == ["no-half"] and f.error is None
    assert f.no_half.startswith("not run in half: ") and "Half" in f.no_half and f.note == f.no_half
    report = PrecisionReport("float16", 65504.0, 1e-3, 0.01, [], [f], 17)
    assert report.flagged_modules() == [f]
    assert any(
        line.startswith("no-half") and "Inverse" in line and "not run in half" in line
        for line in report.table().splitlines()
    )


def test_json_keeps_an_infinite_error_apart_from_not_run():
    """to_json writes findings as they are (a former clean-up step was dead code): inf error stays inf
    (JSON Infinity), None (not run in half) stays null."""
    import json

    from ops.precision.onnx_nodes import NodeFinding
    from ops.precision.report import PrecisionReport

    nodes = [
        NodeFinding("a", "Pow", "m", max_abs=1e5, error=float("inf"), flags=["overflow"]),
        NodeFinding("b", "Relu", "m", max_abs=1.0, error=None, no_half="no kernel", flags=["no-half"]),
    ]
    text = json.dumps(PrecisionReport("float16", 65504.0, 1e-3, 0.01, nodes, [], 17).to_json())
    back = {n["node"]: n for n in json.loads(text)["nodes"]}
    assert back["a"]["error"] == float("inf") and back["b"]["error"] is None and back["b"]["no_half"] == "no kernel"
    assert [n["node"] for n in json.loads(text)["nodes"]] == ["a", "b"]  # overflow outranks no-half
