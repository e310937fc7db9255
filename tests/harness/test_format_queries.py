"""ops/trt/harness/checks.format_queries, the supportsFormatCombination part of ops.check's trt.harness row: it
walks the prefixes TensorRT asks about instead of every full combination, and still catches a plugin that
answers wrongly, reads a position TensorRT has not chosen yet, or accepts a non-linear format. Driven by stand-in
plugins (no build): the real plugins are checked by test_plugin_interface.py and ops.check."""

import ops
from ops.trt.harness import host as harness
from ops.trt.harness.cases import valid_type_combos
from ops.trt.harness.checks import format_queries

OP = "opforge::rms_norm"  # x, weight -> y: three positions


class Declared:
    """Answers as the declaration says: position pos is supported when inOut[0..pos] is a prefix of a valid combo."""

    def __init__(self, op):
        self.valid = set(valid_type_combos(op))

    def answer(self, pos, io):
        prefix = tuple(t.type for t in io[: pos + 1])
        return any(v[: pos + 1] == prefix for v in self.valid)

    def supports(self, pos, io, nb_in):
        return io[pos].format == harness.K_LINEAR and self.answer(pos, io)


def test_a_plugin_that_follows_the_declaration_passes_with_few_queries():
    op = ops.get_op(OP)
    problem, count = format_queries(Declared(op), op)
    assert problem is None
    # 12 dtypes at the first position, then 12 more after each of the 3 supported ones, and so on; each asked
    # with 12 fillings of the later positions (1 at the last position) and once in a non-linear format
    n = len(harness.ALL_TRT_DTYPES)
    assert count == n * (n + 1) + 3 * n * (n + 1) + 3 * n * 2


def test_an_answer_that_reads_a_later_position_is_caught():
    op = ops.get_op(OP)

    class PeeksAhead(Declared):  # also requires the output's dtype when asked about the first input
        def answer(self, pos, io):
            return super().answer(pos, io) and (pos != 0 or io[2].type == io[0].type)

    problem, _ = format_queries(PeeksAhead(op), op)
    assert problem and problem.startswith("supportsFormatCombination(pos=0) disagrees")


def test_a_wrong_answer_and_a_non_linear_format_are_caught():
    op = ops.get_op(OP)

    class NoHalfWeight(Declared):  # refuses a float16 weight that the declaration allows
        def answer(self, pos, io):
            return super().answer(pos, io) and not (pos == 1 and io[1].type == harness.TRT_DTYPE["float16"])

    class AnyFormat(Declared):
        def supports(self, pos, io, nb_in):
            return self.answer(pos, io)

    problem, _ = format_queries(NoHalfWeight(op), op)
    assert problem and "(pos=1) disagrees" in problem
    problem, _ = format_queries(AnyFormat(op), op)
    assert problem and "accepts a non-linear format" in problem
