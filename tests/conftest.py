"""Suite-wide rules. The compiled kernels must load: a missing, stale or foreign build fails the whole run
with the rebuild command (it used to turn every compiled-op test into a skip, and pytest exited 0)."""

import itertools

import pytest
import torch

import ops

_counter = itertools.count()


@pytest.fixture
def unique_id():
    """A fresh op id per test: torch keeps every schema defined in a process."""
    return lambda base="op": f"opforge_test::{base}_{next(_counter)}"


def pytest_report_header(config):
    from ops.extension import status

    s = status()
    return [f"opforge: ops._C loaded={s['loaded']} cuda_kernels={s['cuda']} torch={torch.__version__} "
            f"cuda_available={torch.cuda.is_available()}" + (f" error={s['error']}" if s["error"] else "")]


def pytest_sessionstart(session):
    try:
        ops.load_extension()
    except ops.ExtensionError as e:
        pytest.exit(f"opforge's compiled kernels cannot be used, so the suite cannot test them: {e}", returncode=1)
