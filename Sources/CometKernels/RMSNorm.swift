/// Added to the mean square of a row before the square root.
public let rmsNormEpsilon: Float = 1e-5

/// RMSNorm per row: out = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps).
///
/// x, out [N, C] (N = B*T tokens, or any range of them; out overwritten);
/// weight [1, C]; rstd [1, N], overwritten and kept for `rmsNormBackward`
/// (threads that split the rows pass the matching columns of it).
public func rmsNormForward(_ x: MatrixView, weight: MatrixView, rstd: MatrixView, into out: MatrixView) {
    let (rows, width) = (x.rows, x.columns)
    precondition(out.rows == rows && out.columns == width, "rmsnorm output must be shaped as its input")
    precondition(weight.rows == 1 && weight.columns == width && rstd.rows == 1 && rstd.columns == rows,
                 "rmsnorm weight must be [1, C] and rstd [1, N]")
    elementwise("rmsnorm forward", elements: rows * width) {
        for i in 0..<rows {
            let xRow = x.base + i * x.rowStride, outRow = out.base + i * out.rowStride
            var sumOfSquares: Float = 0
            for j in 0..<width { sumOfSquares += xRow[j] * xRow[j] }
            let r = 1 / (sumOfSquares / Float(width) + rmsNormEpsilon).squareRoot()
            rstd.base[i] = r
            for j in 0..<width { outRow[j] = xRow[j] * r * weight.base[j] }
        }
    }
}

/// Backward of `rmsNormForward`, with xhat = x * rstd:
/// dx = rstd * (dout * weight - xhat * mean(dout * weight * xhat)), dweight += dout * xhat.
///
/// dout, x, dx [N, C] (dx overwritten); weight [1, C]; rstd [1, N] from the forward;
/// dweight [1, C], accumulated (so threads that split the rows need one each).
public func rmsNormBackward(
    _ dout: MatrixView, x: MatrixView, weight: MatrixView, rstd: MatrixView,
    into dx: MatrixView, accumulating dweight: MatrixView
) {
    let (rows, width) = (x.rows, x.columns)
    precondition(dout.rows == rows && dout.columns == width && dx.rows == rows && dx.columns == width,
                 "rmsnorm gradients must be shaped as its input")
    precondition(weight.rows == 1 && weight.columns == width && dweight.rows == 1 && dweight.columns == width
                 && rstd.rows == 1 && rstd.columns == rows, "rmsnorm weight and dweight must be [1, C] and rstd [1, N]")
    let (w, dw) = (weight.base, dweight.base)
    elementwise("rmsnorm backward", elements: rows * width) {
        for i in 0..<rows {
            let doutRow = dout.base + i * dout.rowStride, xRow = x.base + i * x.rowStride, dxRow = dx.base + i * dx.rowStride
            let r = rstd.base[i]
            var projection: Float = 0  // sum_j dxhat_j xhat_j
            for j in 0..<width {
                let xhat = xRow[j] * r
                projection += doutRow[j] * w[j] * xhat
                dw[j] += doutRow[j] * xhat
            }
            let meanProjection = projection / Float(width)
            for j in 0..<width { dxRow[j] = r * (doutRow[j] * w[j] - xRow[j] * r * meanProjection) }
        }
    }
}
