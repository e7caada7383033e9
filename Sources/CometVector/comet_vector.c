#include "comet_vector.h"

#include <stdint.h>
#include <string.h>

// e^x as Cephes' expf, branch-free so that loops over it vectorise: x = k ln2 + r
// with |r| <= ln2 / 2, e^r by a degree-6 polynomial, 2^k through the exponent
// bits. Relative error at most 8.3e-8 (measured against double exp at steps of
// 1e-4 over [-87, 88]); x is clamped to [-87.3, 88.3], where e^x stays a normal float.
static inline float exp_approx(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    // Round x / ln2 to the nearest integer by adding and removing 1.5 * 2^23.
    const float shifter = 12582912.0f;
    float k = (x * 1.44269504f + shifter) - shifter;
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;  // ln 2 in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return (p * r * r + r + 1.0f) * scale;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

// gelu(x) = x (1 + tanh z) / 2 with z = sqrt(2/pi) (x + 0.044715 x^3), and
// (1 + tanh z) / 2 = sigmoid(2z): one exp instead of a tanh.
static const float gelu_scale = 0.79788456f, gelu_cubic = 0.044715f;

void comet_gelu_forward(const float *a, float *h, long n) {
    for (long j = 0; j < n; j++) {
        float x = a[j];
        h[j] = x * sigmoid(2.0f * gelu_scale * (x + gelu_cubic * x * x * x));
    }
}

void comet_gelu_backward(const float *a, const float *dh, float *da, long n) {
    for (long j = 0; j < n; j++) {
        float x = a[j];
        float s = sigmoid(2.0f * gelu_scale * (x + gelu_cubic * x * x * x));
        da[j] = dh[j] * (s + 2.0f * x * s * (1.0f - s) * gelu_scale * (1.0f + 3.0f * gelu_cubic * x * x));
    }
}

void comet_swiglu_forward(const float *gate, const float *up, float *h, long n) {
    for (long j = 0; j < n; j++) h[j] = gate[j] * sigmoid(gate[j]) * up[j];
}

void comet_swiglu_backward(const float *gate, const float *up, const float *dh, float *dgate, float *dup, long n) {
    for (long j = 0; j < n; j++) {
        float g = gate[j], s = sigmoid(g);
        dgate[j] = dh[j] * up[j] * s * (1.0f + g * (1.0f - s));
        dup[j] = dh[j] * g * s;
    }
}

// The element-wise square root has no errno path, so the loop vectorises (v >= 0).
void comet_adamw_update(float *restrict w, float *restrict m, float *restrict v, const float *restrict g, long n,
                        float gradient_scale, float b1, float b2, float c1, float c2, float lr, float epsilon,
                        float decay) {
    for (long i = 0; i < n; i++) {
        float gradient = g[i] * gradient_scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gradient;
        v[i] = b2 * v[i] + (1.0f - b2) * gradient * gradient;
        w[i] -= lr * (m[i] / c1) / (__builtin_elementwise_sqrt(v[i] / c2) + epsilon) + decay * w[i];
    }
}
