"""ops.check's background preparation (ops/check/__init__.py prepare/settle, trt_stages.prebuild): the TensorRT
libraries a run will need are built on another thread from its start, only when a TensorRT stage will run, and
the stages wait for them and report what the thread met."""

import ops
from ops.check import prepare, settle, trt_stages
from ops.check.__main__ import main

PLUGIN_OP = "opforge::rms_norm"


def test_nothing_starts_when_no_tensorrt_stage_runs():
    op = ops.get_op(PLUGIN_OP)
    assert trt_stages.prebuild([op], ("torch", "onnx"), False) is None
    assert trt_stages.prebuild([o for o in ops.all_ops() if not o.decl.onnx], (), False) is None  # no plugin
    assert trt_stages._prebuilt.is_set()


def test_the_plugin_library_is_built_on_another_thread_and_the_stages_get_it():
    op = ops.get_op(PLUGIN_OP)
    thread = trt_stages.prebuild([op], ("trt.plugin",), True)
    assert thread is not None and thread.name == "opforge-trt-prebuild"
    row = trt_stages.plugin(op, None)  # waits for the thread
    assert not thread.is_alive() and trt_stages._prebuilt.is_set()
    assert row.status == "pass" and "libopforge_trt_plugins.so compiled" in row.detail, row.detail
    assert ("release", op.decl.package) in trt_stages._cache


def test_prepare_and_settle_leave_nothing_running():
    prepare([ops.get_op(PLUGIN_OP)], only=("trt.harness",), quick=True)
    settle()
    assert trt_stages._prebuilt.is_set()


def test_a_check_run_with_tensorrt_stages_passes(capsys):
    assert main([PLUGIN_OP, "--only", "trt.plugin", "--only", "trt.harness", "--quick", "-q"]) == 0
