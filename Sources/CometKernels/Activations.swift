import Foundation

/// The expert FFN's activation, applied between GEMM1 and GEMM2.
///
/// GEMM1 produces `A [m, width(K)]`; the activation turns it into `H [m, K]`.
public enum Activation: String, Sendable, Codable, CaseIterable {
    /// GELU, tanh approximation: H = gelu(A), A [m, K].
    case gelu
    /// SwiGLU: A = [gate | up] [m, 2K], H = silu(gate) * up.
    case swiglu

    /// Columns of GEMM1's output for `hidden` = K.
    public func width(hidden: Int) -> Int { self == .gelu ? hidden : 2 * hidden }

    /// H = act(A). A [m, width], H [m, K].
    public func forward(_ a: MatrixView, into h: MatrixView) {
        precondition(a.rows == h.rows && a.columns == width(hidden: h.columns), "activation shapes do not fit")
        let hidden = h.columns
        for i in 0..<h.rows {
            let aRow = a.base + i * a.rowStride, hRow = h.base + i * h.rowStride
            switch self {
            case .gelu:
                for j in 0..<hidden { hRow[j] = geluValue(aRow[j]) }
            case .swiglu:
                for j in 0..<hidden { hRow[j] = silu(aRow[j]) * aRow[hidden + j] }
            }
        }
    }

    /// dA = dH * act'(A). A, dA [m, width], dH [m, K].
    public func backward(_ a: MatrixView, _ dh: MatrixView, into da: MatrixView) {
        precondition(a.rows == dh.rows && da.rows == a.rows && da.columns == a.columns, "activation shapes do not fit")
        let hidden = dh.columns
        for i in 0..<a.rows {
            let aRow = a.base + i * a.rowStride, dhRow = dh.base + i * dh.rowStride, daRow = da.base + i * da.rowStride
            switch self {
            case .gelu:
                for j in 0..<hidden { daRow[j] = dhRow[j] * geluDerivative(aRow[j]) }
            case .swiglu:
                for j in 0..<hidden {
                    let gate = aRow[j], up = aRow[hidden + j]
                    daRow[j] = dhRow[j] * up * siluDerivative(gate)
                    daRow[hidden + j] = dhRow[j] * silu(gate)
                }
            }
        }
    }
}

private let geluScale: Float = 0.797_884_56  // sqrt(2 / pi)
private let geluCubic: Float = 0.044_715

// 0.5 (1 + tanh z) = sigmoid(2z): one exp instead of a tanh, several times faster.

@inline(__always) func geluValue(_ x: Float) -> Float {
    x * sigmoid(2 * geluScale * (x + geluCubic * x * x * x))
}

@inline(__always) func geluDerivative(_ x: Float) -> Float {
    let s = sigmoid(2 * geluScale * (x + geluCubic * x * x * x))
    return s + 2 * x * s * (1 - s) * geluScale * (1 + 3 * geluCubic * x * x)
}

@inline(__always) func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

@inline(__always) func silu(_ x: Float) -> Float { x * sigmoid(x) }

@inline(__always) func siluDerivative(_ x: Float) -> Float {
    let s = sigmoid(x)
    return s * (1 + x * (1 - s))
}
