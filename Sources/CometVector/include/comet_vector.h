// Element-wise kernels over float rows, written so that the C compiler
// vectorises them (Swift's SIMD types compile exp-like code lane by lane here).
// Each takes n elements; rows of a matrix view are passed one at a time.
#ifndef COMET_VECTOR_H
#define COMET_VECTOR_H

/// h = gelu(a), the tanh approximation.
void comet_gelu_forward(const float *a, float *h, long n);
/// da = dh * gelu'(a).
void comet_gelu_backward(const float *a, const float *dh, float *da, long n);
/// h = silu(gate) * up.
void comet_swiglu_forward(const float *gate, const float *up, float *h, long n);
/// dgate = dh * up * silu'(gate), dup = dh * silu(gate).
void comet_swiglu_backward(const float *gate, const float *up, const float *dh, float *dgate, float *dup, long n);

#endif
