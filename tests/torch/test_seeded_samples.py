"""Samples are drawn with a fixed seed (env OPFORGE_SEED overrides it), and failures say which."""

import subprocess
import sys

import pytest
import torch
from op_cases import message

import ops
from ops.check import oracle

OP = ops.get_op("opforge::scaled_gelu")


def _draw():
    return [s.inputs[0] for s in oracle.samples(OP, "cpu", "float32")]


def test_same_seed_same_samples_and_the_callers_rng_is_left_alone():
    state = torch.random.get_rng_state()
    first = _draw()
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.randn(100)  # moving the global RNG does not change what the samples are
    assert all(torch.equal(a, b) for a, b in zip(first, _draw()))


def test_opforge_seed_overrides_the_default(monkeypatch):
    monkeypatch.delenv("OPFORGE_SEED", raising=False)
    default = _draw()
    assert oracle.seed() == oracle.DEFAULT_SEED
    monkeypatch.setenv("OPFORGE_SEED", "1234")
    assert oracle.seed() == 1234
    other = _draw()
    assert not torch.equal(default[0], other[0])
    torch.manual_seed(1234)
    assert torch.equal(other[0], (torch.randn(8, 33) * 3.0))  # what scaled_gelu's samples draw first
    monkeypatch.setenv("OPFORGE_SEED", "x")
    with pytest.raises(ValueError, match="OPFORGE_SEED must be an integer"):
        oracle.seed()


def test_samples_are_the_same_in_another_process():
    code = (
        "import torch, ops; from ops.check.oracle import samples; "
        "print(float(samples(ops.get_op('opforge::scaled_gelu'), 'cpu', 'float32')[0].inputs[0].sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out.strip().splitlines()[-1]) == pytest.approx(float(_draw()[0].sum()), rel=1e-6)


def test_generated_test_failures_print_the_seed(monkeypatch):
    monkeypatch.setenv("OPFORGE_SEED", "77")
    text = message(OP, "float16", "as declared", [2, 3], {"ok": False})
    assert "seed 77" in text and "OPFORGE_SEED=77" in text and OP.id in text
