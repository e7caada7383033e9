import COpenBLAS

/// C = alpha * op(A) * op(B) + beta * C, through OpenBLAS's `cblas_sgemm`.
///
/// Shapes: op(A) [m, k], op(B) [k, n], C [m, n]; every operand may be a sub-view.
/// The caller's thread does the work (see `OpenBLAS.useCallerThreadOnly()`), so
/// several GEMM threads of one rank run side by side.
public func gemm(
    _ a: MatrixView, _ b: MatrixView, into c: MatrixView,
    transA: Transpose = .none, transB: Transpose = .none, alpha: Float = 1, beta: Float = 0
) {
    let (m, k) = transA == .none ? (a.rows, a.columns) : (a.columns, a.rows)
    let (kB, n) = transB == .none ? (b.rows, b.columns) : (b.columns, b.rows)
    precondition(k == kB && c.rows == m && c.columns == n,
                 "gemm shapes do not fit: op(A) \(m)x\(k), op(B) \(kB)x\(n), C \(c.rows)x\(c.columns)")
    if m == 0 || n == 0 { return }
    cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                alpha, a.base, Int32(a.rowStride), b.base, Int32(b.rowStride),
                beta, c.base, Int32(c.rowStride))
}

/// The same product computed naively with Double accumulation: the reference
/// that BLAS kernels are checked against.
public func referenceGEMM(
    _ a: MatrixView, _ b: MatrixView, into c: MatrixView,
    transA: Transpose = .none, transB: Transpose = .none, alpha: Float = 1, beta: Float = 0
) {
    let k = transA == .none ? a.columns : a.rows
    for i in 0..<c.rows {
        for j in 0..<c.columns {
            var sum = 0.0
            for p in 0..<k {
                let x = transA == .none ? a[i, p] : a[p, i]
                let y = transB == .none ? b[p, j] : b[j, p]
                sum += Double(x) * Double(y)
            }
            let previous = beta == 0 ? 0 : Double(beta) * Double(c[i, j])
            c[i, j] = Float(Double(alpha) * sum + previous)
        }
    }
}

extension Transpose {
    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}
