import CometVector

/// The expert FFN's activation, applied between GEMM1 and GEMM2, row by row
/// through the vectorised C kernels of `CometVector`.
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
        elementwise("\(rawValue) forward", elements: h.rows * hidden) {
            for i in 0..<h.rows {
                let aRow = a.base + i * a.rowStride, hRow = h.base + i * h.rowStride
                switch self {
                case .gelu: comet_gelu_forward(aRow, hRow, hidden)
                case .swiglu: comet_swiglu_forward(aRow, aRow + hidden, hRow, hidden)
                }
            }
        }
    }

    /// dA = dH * act'(A). A, dA [m, width], dH [m, K].
    public func backward(_ a: MatrixView, _ dh: MatrixView, into da: MatrixView) {
        precondition(a.rows == dh.rows && da.rows == a.rows && da.columns == a.columns, "activation shapes do not fit")
        let hidden = dh.columns
        elementwise("\(rawValue) backward", elements: a.rows * hidden) {
            for i in 0..<a.rows {
                let aRow = a.base + i * a.rowStride, dhRow = dh.base + i * dh.rowStride, daRow = da.base + i * da.rowStride
                switch self {
                case .gelu: comet_gelu_backward(aRow, dhRow, daRow, hidden)
                case .swiglu: comet_swiglu_backward(aRow, aRow + hidden, dhRow, daRow, daRow + hidden, hidden)
                }
            }
        }
    }
}
