import CometKernels

// Helpers shared by the unit-test targets.

/// A matrix [rows, columns] of values uniform in [-scale, scale) drawn from `seed`.
public func randomMatrix(rows: Int, columns: Int, scale: Float = 1, seed: UInt64) -> Matrix {
    var generator = SeededGenerator(seed: seed)
    let matrix = Matrix(rows: rows, columns: columns)
    matrix.randomize(scale: scale, &generator)
    return matrix
}

/// sum_i a_i b_i over the elements of two equally shaped matrices, in Double.
public func dot(_ a: Matrix, _ b: Matrix) -> Double {
    precondition(a.rows == b.rows && a.columns == b.columns, "dot of differently shaped matrices")
    return zip(a.elements, b.elements).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

/// dL/dv for v = `values[index]` by central differences, (L(v + h) - L(v - h)) / (2h)
/// with the step actually taken in Float; `values[index]` is restored afterwards.
/// `loss` returns nil when the perturbed point is not comparable (then so does this).
public func centralDifference(
    _ values: UnsafeMutableBufferPointer<Float>, _ index: Int, step: Float, _ loss: () -> Double?
) -> Double? {
    let original = values[index]
    defer { values[index] = original }
    let (plus, minus) = (original + step, original - step)
    values[index] = plus
    guard let upper = loss() else { return nil }
    values[index] = minus
    guard let lower = loss() else { return nil }
    return (upper - lower) / (Double(plus) - Double(minus))
}
