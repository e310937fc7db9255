"""Fits the rational approximations in gelu_math.h (run it to reproduce the constants there).

    python csrc/scaled_gelu/fit_coefficients.py

erf(x / sqrt(2)) = x * P(x^2) / Q(x^2) on [0, 5.4] and tanh(u) = u * P(u^2) / Q(u^2) on [0, 9], Q(0) = 1,
each minimising the largest relative error: linearised least squares, iterated (Sanathanan-Koerner, the
previous Q divides the residual) with Lawson's reweighting towards the minimax solution. Only numpy.
Past the ends both functions round to +-1 in float32 (1 - f < 2^-25), so the kernel clamps there.
"""

import math

import numpy as np


def fit_rational(x, f, num_degree, den_degree, iters=60):
    s = x * x
    a_p = np.stack([s**k for k in range(num_degree + 1)], 1)
    a_q = np.stack([s**k for k in range(1, den_degree + 1)], 1)
    w = np.ones_like(x)
    q_prev = np.ones_like(x)
    best = None
    for _ in range(iters):
        scale = np.sqrt(w) / (np.abs(f) * q_prev)
        a = np.concatenate([a_p, -f[:, None] * a_q], 1) * scale[:, None]
        c, *_ = np.linalg.lstsq(a, f * scale, rcond=None)
        p, q = c[: num_degree + 1], np.concatenate([[1.0], c[num_degree + 1 :]])
        q_prev = np.polynomial.polynomial.polyval(s, q)
        err = (np.polynomial.polynomial.polyval(s, p) / q_prev - f) / f
        if best is None or np.abs(err).max() < best[0]:
            best = (np.abs(err).max(), p, q)
        w = np.maximum(w * np.abs(err) / np.sum(w * np.abs(err)), 1e-12)
    return best


def grid(end, n=20000):
    cheb = end * (1 - np.cos(np.linspace(0, np.pi, 2 * n))) / 2  # dense at both ends
    x = np.unique(np.concatenate([cheb, np.linspace(0, end, n)]))
    x[x == 0] = 1e-6  # f(x)/x at 0 is its limit, approached closely enough
    return x


def show(name, fit):
    err, p, q = fit
    fmt = lambda cs: ", ".join(f"{np.float32(v):.9e}f" for v in cs)  # noqa: E731
    print(f"{name}: max relative error {err:.2e} (float64 evaluation)\n  P = {{{fmt(p)}}}\n  Q = {{{fmt(q)}}}")


if __name__ == "__main__":
    x = grid(5.4)
    show("erf(x/sqrt(2))/x", fit_rational(x, np.array([math.erf(v / math.sqrt(2)) / v for v in x]), 5, 5))
    u = grid(9.0)
    show("tanh(u)/u", fit_rational(u, np.tanh(u) / u, 4, 4))
