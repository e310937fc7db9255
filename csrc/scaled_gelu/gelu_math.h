// The rational approximations of erf and tanh in scaled_gelu's kernels (fit_coefficients.py reproduces the
// constants): the CPU kernel evaluates both, the CUDA kernel the erf one (its tanh form is libm's tanhf, which
// measured faster there). In a CUDA translation unit the coefficient tables are __constant__ (device code reads
// them as instruction operands); elsewhere constexpr.
#pragma once

namespace opforge_kernels {
namespace opforge {
namespace scaled_gelu {
namespace math {

#if defined(__CUDACC__)
#define OPFORGE_GELU_TABLE static __constant__ const
#else
#define OPFORGE_GELU_TABLE constexpr
#endif

constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kKappa = 0.044715f;

// erf(x / sqrt(2)) = x * P(x^2) / Q(x^2) on |x| <= kErfMaxX; beyond it erf(x / sqrt(2)) rounds to +-1 in
// float32 (1 - erf < 2^-25), so x is clamped there first (which also keeps x^10 finite for huge x).
constexpr float kErfMaxX = 5.4f;
OPFORGE_GELU_TABLE float kErfP[] = {7.978845835e-01f, 6.509676576e-02f, 9.203887545e-03f,
                                    3.123043571e-04f, 1.265413175e-05f, 4.837789191e-08f};
OPFORGE_GELU_TABLE float kErfQ[] = {1.000000000e+00f, 2.482532859e-01f, 2.791117318e-02f,
                                    1.812823815e-03f, 6.989686517e-05f, 1.237519314e-06f};
// tanh(u) = u * P(u^2) / Q(u^2) on |u| <= kTanhMaxU; beyond it tanh(u) rounds to +-1 in float32.
constexpr float kTanhMaxU = 9.0f;
OPFORGE_GELU_TABLE float kTanhP[] = {1.000000000e+00f, 1.338111162e-01f, 3.495690413e-03f, 2.061073974e-05f,
                                     1.335690047e-08f};
OPFORGE_GELU_TABLE float kTanhQ[] = {1.000000000e+00f, 4.671442807e-01f, 2.587737329e-02f, 3.285800922e-04f,
                                     7.777487667e-07f};

#undef OPFORGE_GELU_TABLE

}  // namespace math
}  // namespace scaled_gelu
}  // namespace opforge
}  // namespace opforge_kernels
