import Foundation

// Row softmax pieces shared by attention and cross-entropy. The largest value is
// subtracted before `exp`, so that nothing overflows.

/// out_j = scale * exp(x_j) / sum_k exp(x_k) for x, out [count]; out may be x.
func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, scale: Float = 1, into out: UnsafeMutablePointer<Float>) {
    let largest = largestElement(x, count: count)
    var sum: Float = 0
    for j in 0..<count {
        out[j] = exp(x[j] - largest)
        sum += out[j]
    }
    let normalizer = scale / sum
    for j in 0..<count { out[j] *= normalizer }
}

/// log sum_j exp(x_j) for x [count].
func logSumExp(_ x: UnsafeMutablePointer<Float>, count: Int) -> Float {
    let largest = largestElement(x, count: count)
    var sum: Float = 0
    for j in 0..<count { sum += exp(x[j] - largest) }
    return largest + log(sum)
}

private func largestElement(_ x: UnsafeMutablePointer<Float>, count: Int) -> Float {
    var largest = -Float.infinity
    for j in 0..<count { largest = max(largest, x[j]) }
    return largest
}
