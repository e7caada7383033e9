import COpenBLAS
import CometShim

/// C = alpha * op(A) * op(B) + beta * C, through OpenBLAS's `cblas_sgemm`.
///
/// Shapes: op(A) [m, k], op(B) [k, n], C [m, n]; every operand may be a sub-view.
/// The caller's thread does the work (see `OpenBLAS.useCallerThreadOnly()`), so
/// several GEMM threads of one rank run side by side. When a model charges GEMMs
/// (`ModelledKernels`), the call is charged to device time from it, not by its CPU;
/// in a time-only run it is charged and not computed.
public func gemm(
    _ a: MatrixView, _ b: MatrixView, into c: MatrixView,
    transA: Transpose = .none, transB: Transpose = .none, alpha: Float = 1, beta: Float = 0
) {
    let (m, k) = transA == .none ? (a.rows, a.columns) : (a.columns, a.rows)
    let (kB, n) = transB == .none ? (b.rows, b.columns) : (b.columns, b.rows)
    precondition(k == kB && c.rows == m && c.columns == n,
                 "gemm shapes do not fit: op(A) \(m)x\(k), op(B) \(kB)x\(n), C \(c.rows)x\(c.columns)")
    if m == 0 || n == 0 { return }
    guard let costs = ModelledKernels.gemms, k > 0 else {
        return multiply(a, b, into: c, transA: transA, transB: transB, alpha: alpha, beta: beta)
    }
    let start = threadCPUTime()
    let kind = GEMMCosts.Kind(n: n, transA: transA, transB: transB, lda: a.rowStride, ldb: b.rowStride,
                              ldc: c.rowStride, accumulates: beta != 0)
    let modelled = costs.gemmSeconds(m: m, k: k, kind, fused: FusedKernel.current)
    if !ModelledKernels.isTimeOnly { multiply(a, b, into: c, transA: transA, transB: transB, alpha: alpha, beta: beta) }
    comet_charge_modelled(threadCPUTime() - start, modelled)
}

/// `cblas_sgemm` on views whose shapes fit.
func multiply(
    _ a: MatrixView, _ b: MatrixView, into c: MatrixView, transA: Transpose, transB: Transpose, alpha: Float, beta: Float
) {
    cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(c.rows), Int32(c.columns),
                Int32(transA == .none ? a.columns : a.rows),
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
