import CometKernels

import TestSupport

// Helpers for the layer kernels' tests (the shared ones are in TestSupport).

/// The largest |gradient - central difference of `loss`| over every element of
/// `values` [same shape as gradient], and where it is.
func worstGradientError(
    _ gradient: Matrix, of values: Matrix, step: Float, _ loss: () -> Double
) -> (error: Double, index: Int) {
    precondition(gradient.rows == values.rows && gradient.columns == values.columns, "gradient and values differ in shape")
    var worst = (error: 0.0, index: 0)
    for index in 0..<(values.rows * values.columns) {
        let error = abs(Double(gradient.storage[index]) - centralDifference(values.storage, index, step: step, loss)!)
        if error > worst.error { worst = (error, index) }
    }
    return worst
}

/// The largest |a - b| over two equally shaped matrices.
func largestDifference(_ a: Matrix, _ b: Matrix) -> Double {
    precondition(a.rows == b.rows && a.columns == b.columns, "differently shaped matrices")
    return zip(a.elements, b.elements).map { abs(Double($0) - Double($1)) }.max() ?? 0
}

/// A matrix of NaNs: an output filled with it shows that a kernel overwrites
/// (every element it should write comes out a number).
func nanMatrix(rows: Int, columns: Int) -> Matrix {
    let matrix = Matrix(rows: rows, columns: columns)
    matrix.fill(.nan)
    return matrix
}
