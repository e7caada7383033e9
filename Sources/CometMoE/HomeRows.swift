import CometKernels

/// What a rank does with its own tokens' rows, in send order (see `RoutingPlan`):
/// copy tokens out before dispatch, and sum the k expert outputs of each token
/// (the top-k reduce) after combine. Each step takes a range so that schedules
/// can cut it into chunks or column blocks.
public enum HomeRows {
    /// rows[r] = x[token of r] for send-order rows `rows`. x [T, N], out [T k, N].
    public static func pack(_ x: MatrixView, _ plan: RoutingPlan, rows: Range<Int>, into out: MatrixView) {
        let n = x.columns
        elementwise("pack rows", elements: rows.count * n) {
            for row in rows {
                (out.base + row * out.rowStride).update(from: x.base + plan.sendToken[row] * x.rowStride, count: n)
            }
        }
    }

    /// rows[r] = w(r) * dy[token of r]: the backward of the weighted top-k sum.
    public static func packScaled(
        _ dy: MatrixView, _ plan: RoutingPlan, weights: [Float], into out: MatrixView
    ) {
        let (n, k) = (dy.columns, plan.topK)
        elementwise("pack scaled rows", elements: plan.tokens * k * n) {
            for token in 0..<plan.tokens {
                let source = dy.base + token * dy.rowStride
                for choice in 0..<k {
                    let weight = weights[token * k + choice]
                    let target = out.base + plan.sendRow[token * k + choice] * out.rowStride
                    for j in 0..<n { target[j] = weight * source[j] }
                }
            }
        }
    }

    /// The top-k reduce, with the TP partial results summed too:
    /// y[t, cols] = sum_j w_tj sum_s returned[s region + row(t, j), cols], or the plain
    /// sum when `weights` is nil. returned [TP x region, N] with regions of at least
    /// T k rows (T k here; the window's capacity in comet), y [T, N].
    public static func reduce(
        _ returned: MatrixView, _ plan: RoutingPlan, weights: [Float]?, columns: Range<Int>, into y: MatrixView
    ) {
        let (k, region) = (plan.topK, returned.rows / plan.tensorParallel)
        elementwise("top-k reduce", elements: plan.tokens * k * plan.tensorParallel * columns.count) {
            for token in 0..<plan.tokens {
                let target = y.base + token * y.rowStride
                for j in columns { target[j] = 0 }
                for choice in 0..<k {
                    let weight = weights?[token * k + choice] ?? 1
                    for slot in 0..<plan.tensorParallel {
                        let source = returned.base + (slot * region + plan.sendRow[token * k + choice]) * returned.rowStride
                        for j in columns { target[j] += weight * source[j] }
                    }
                }
            }
        }
    }

    /// dL/dw_tj = <dy_t, sum_s returned[s region + row(t, j)]>: what the router's backward needs (as in `reduce`).
    public static func weightGradients(_ dy: MatrixView, _ returned: MatrixView, _ plan: RoutingPlan) -> [Float] {
        let (n, k, region) = (dy.columns, plan.topK, returned.rows / plan.tensorParallel)
        var gradients = [Float](repeating: 0, count: plan.tokens * k)
        elementwise("weight gradients", elements: plan.tokens * k * plan.tensorParallel * n) {
            for token in 0..<plan.tokens {
                let d = dy.base + token * dy.rowStride
                for choice in 0..<k {
                    var dot: Float = 0
                    for slot in 0..<plan.tensorParallel {
                        let r = returned.base + (slot * region + plan.sendRow[token * k + choice]) * returned.rowStride
                        for j in 0..<n { dot += d[j] * r[j] }
                    }
                    gradients[token * k + choice] = dot
                }
            }
        }
        return gradients
    }
}
