/// Mean cross-entropy in nats: (1/N) sum_i -log softmax(logits[i])[targets[i]],
/// accumulated in Double.
///
/// logits [N, V] (N = B*T tokens, or any range of them); targets [N] in 0..<V.
/// 0 when N is 0. Threads that split the rows get the mean of their own rows:
/// weight each part by its share of rows.
public func crossEntropyForward(_ logits: MatrixView, targets: some RandomAccessCollection<Int>) -> Double {
    precondition(targets.count == logits.rows, "cross-entropy needs one target per row of logits")
    guard logits.rows > 0 else { return 0 }
    let total = elementwise("cross-entropy forward", elements: logits.rows * logits.columns, timeOnly: 0) {
        var total = 0.0
        for (i, target) in targets.enumerated() {
            precondition(target >= 0 && target < logits.columns, "target \(target) outside 0..<\(logits.columns)")
            let row = logits.base + i * logits.rowStride
            total += Double(logSumExp(row, count: logits.columns) - row[target])
        }
        return total
    }
    return total / Double(logits.rows)
}

/// Backward of `crossEntropyForward`: dlogits = dloss * (softmax(logits) - onehot(targets)) / N.
///
/// logits, dlogits [N, V] (dlogits overwritten; it may be logits itself, to work
/// in place); targets [N]; dloss: dL/d(mean loss), 1 when the mean is the loss.
/// Threads that split the rows pass dloss times their share of rows.
public func crossEntropyBackward(
    _ logits: MatrixView, targets: some RandomAccessCollection<Int>, dloss: Float, into dlogits: MatrixView
) {
    precondition(targets.count == logits.rows && dlogits.rows == logits.rows && dlogits.columns == logits.columns,
                 "cross-entropy shapes do not fit")
    let scale = dloss / Float(logits.rows)
    elementwise("cross-entropy backward", elements: logits.rows * logits.columns) {
        for (i, target) in targets.enumerated() {
            precondition(target >= 0 && target < logits.columns, "target \(target) outside 0..<\(logits.columns)")
            let row = logits.base + i * logits.rowStride, dRow = dlogits.base + i * dlogits.rowStride
            softmax(row, count: logits.columns, scale: scale, into: dRow)
            dRow[target] -= scale
        }
    }
}
