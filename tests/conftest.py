"""Suite-wide rules. The compiled kernels must load: a missing, stale or foreign build fails the whole run
with the rebuild command (it used to turn every compiled-op test into a skip, and pytest exited 0)."""

import itertools

import fixture_ops  # noqa: F401  (registers the tests-only ops: opforge_fixture::*)
import op_cases
import pytest
import slow_tests
import torch

import ops
from ops.core.packages import partial_build

_counter = itertools.count()


def pytest_addoption(parser):
    slow_tests.add_options(parser)
    parser.addoption(
        "--op",
        action="append",
        default=None,
        metavar="ID",
        help="run the generated per-op tests for this op only (repeatable), e.g. "
        "--op opforge::rms_norm --op opforge_fixture::masked_scale",
    )
    parser.addoption(
        "--package",
        action="append",
        default=[],
        metavar="PKG",
        help="import this op package first (repeatable, as for the CLIs): its ops join the generated "
        "per-op tests, e.g. --package mypkg.ops --op mypkg::softclip",
    )


def pytest_configure(config):
    config.pluginmanager.register(slow_tests.SlowTests(config), "opforge-slow-tests")
    _import_packages(config.getoption("package"))
    wanted = config.getoption("op")
    if wanted:
        known = {op.id for op in op_cases.candidate_ops()}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise pytest.UsageError(
                f"--op {', '.join(unknown)}: no registered op with samples of that id; "
                f"known: {', '.join(sorted(known))}"
            )
        op_cases.SELECTED = list(wanted)


def _import_packages(names):
    """--package: a user's op package is tested like the built-in ops. Its kernels are loaded with the others at
    session start, so a missing or stale build of it stops the run too."""
    from ops.core.discovery import import_package
    from ops.core.errors import OpforgeError

    for name in names:
        try:
            import_package(name)
        except OpforgeError as e:
            raise pytest.UsageError(f"--package {name}: {e}") from None


@pytest.fixture
def unique_id():
    """A fresh op id per test: torch keeps every schema defined in a process."""
    return lambda base="op": f"opforge_test::{base}_{next(_counter)}"


def pytest_report_header(config):
    from ops.check.oracle import seed
    from ops.torch.extension import status

    s = status()
    return [
        f"opforge: ops._C loaded={s['loaded']} cuda_kernels={s['cuda']} torch={torch.__version__} "
        f"cuda_available={torch.cuda.is_available()}" + (f" error={s['error']}" if s["error"] else ""),
        f"opforge: samples seeded with {seed()} (env OPFORGE_SEED); generated per-op tests over "
        f"{', '.join(op.id for op in op_cases.generated_ops())}",
    ]


def pytest_sessionstart(session):
    try:
        ops.load_extension()
    except ops.ExtensionError as e:
        pytest.exit(f"opforge's compiled kernels cannot be used, so the suite cannot test them: {e}", returncode=1)
    # A partial build (make demo's `ops.build --ops`) holds some ops: the others' tests would fail one by one.
    built = partial_build("ops.library")
    if built is not None:
        pytest.exit(
            f"ops._C is a partial build of {len(built)} ops ({', '.join(sorted(built))}; make demo builds only "
            "those), so the suite cannot test the others. Build every op: make build (or: python -m ops.build)",
            returncode=1,
        )
