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

/// One AdamW step over n parameters w with moments m and v and gradients g:
/// g' = g * gradient_scale; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
/// w -= lr (m / c1) / (sqrt(v / c2) + epsilon) + decay w, with c1, c2 the bias
/// corrections and decay = lr * weight decay (0 for tensors that do not decay).
void comet_adamw_update(float *w, float *m, float *v, const float *g, long n, float gradient_scale,
                        float b1, float b2, float c1, float c2, float lr, float epsilon, float decay);

#endif
