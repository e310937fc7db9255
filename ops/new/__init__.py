"""`python -m ops.new NS::NAME`: scaffold a new op (declaration, reference, samples, CPU and CUDA kernel skeletons).

Three sources for the op's signature:

- flags only: `--input`, `--output`, `--attr` (the mini-syntax below, one flag per field, mapped 1:1 onto
  `Input`/`Output`/`Attr`); the reference is a clearly marked placeholder that returns zeros;
- `--like ns::op[.overload]`: a torch operator's schema (Tensor -> input, Tensor? -> optional input,
  int/float/bool/str/int[]/float[] -> attribute, returns -> outputs); the reference calls the operator;
- `--from module:function`: a Python function's signature (Tensor parameters -> inputs, typed parameters with
  defaults -> attributes); the reference calls the function.

For --like/--from the output shape rules are derived by running the callable on sample inputs (`--shapes`, or
a few guesses) and fitting each output dim to the shape language: an input dim, an int attribute, a list
element, a simple combination of those, or a constant. A rule is only written when it reproduces every run,
including runs with one input dim or attribute changed at a time; otherwise ops.new stops and says which
`--output` to pass. `--output` always wins (and is then checked against the runs).

The kernel files it writes are skeletons (the math is the user's): the declaration marks them with
`kernels_pending=("cpu", "cuda")`, so the op builds, runs its reference on those devices, and `ops.check`
passes while reporting each such stage as REF (ran the reference), never as a kernel pass.

The package, one module per step: `syntax` (the flags' mini-syntax), `plan` (the op's signature from the flags, a
torch operator's schema or a Python function), `fit` (deriving output shape rules and samples by running the
callable), `render` (the declaration module and the kernel skeletons), `cli` (putting it together: the command).
"""

from .cli import Args, destination, existing_op, import_modules, main, make_plan, parser, scaffold, validate, write
from .fit import (
    Run,
    cases_from_flags,
    cases_from_runs,
    collect_runs,
    derive_outputs,
    empty_case,
    guessed_shapes,
    onnx_problem,
    perturbed,
    sample_value,
    verify_outputs,
)
from .plan import (
    SCHEMA_TYPES,
    Plan,
    check_id,
    declared_names,
    output_names,
    override,
    plan_from_function,
    plan_from_schema,
    resolve_operator,
)
from .render import render_cpu, render_cuda, render_declaration
from .syntax import EXAMPLES, HELP, LIKE, SpecError, parse_attr, parse_input, parse_output, parse_shapes

__all__ = [
    "EXAMPLES",
    "HELP",
    "LIKE",
    "SCHEMA_TYPES",
    "Args",
    "Plan",
    "Run",
    "SpecError",
    "cases_from_flags",
    "cases_from_runs",
    "check_id",
    "collect_runs",
    "declared_names",
    "derive_outputs",
    "destination",
    "empty_case",
    "existing_op",
    "guessed_shapes",
    "import_modules",
    "main",
    "make_plan",
    "onnx_problem",
    "output_names",
    "override",
    "parse_attr",
    "parse_input",
    "parse_output",
    "parse_shapes",
    "parser",
    "perturbed",
    "plan_from_function",
    "plan_from_schema",
    "render_cpu",
    "render_cuda",
    "render_declaration",
    "resolve_operator",
    "sample_value",
    "scaffold",
    "validate",
    "verify_outputs",
    "write",
]
