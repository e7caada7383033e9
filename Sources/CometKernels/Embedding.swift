/// Token embedding: out[i, :] = table[tokens[i], :].
///
/// tokens [N] with ids in 0..<V (N = B*T tokens, or any range of them);
/// table [V, C]; out [N, C], overwritten.
public func embeddingForward(tokens: some RandomAccessCollection<Int>, table: MatrixView, into out: MatrixView) {
    precondition(tokens.count == out.rows && table.columns == out.columns, "embedding shapes do not fit")
    let width = out.columns
    elementwise("embedding forward", elements: out.rows * width) {
        for (i, token) in tokens.enumerated() {
            precondition(token >= 0 && token < table.rows, "token \(token) outside 0..<\(table.rows)")
            (out.base + i * out.rowStride).update(from: table.base + token * table.rowStride, count: width)
        }
    }
}

/// Backward of `embeddingForward`: dtable[tokens[i], :] += dout[i, :] (scatter-add,
/// so a token that occurs several times gets the sum of its rows).
///
/// tokens [N]; dout [N, C]; dtable [V, C], accumulated. Splitting the work by
/// rows races on dtable; split it by columns instead.
public func embeddingBackward(tokens: some RandomAccessCollection<Int>, dout: MatrixView, accumulating dtable: MatrixView) {
    precondition(tokens.count == dout.rows && dtable.columns == dout.columns, "embedding shapes do not fit")
    let width = dout.columns
    elementwise("embedding backward", elements: dout.rows * width) {
        for (i, token) in tokens.enumerated() {
            precondition(token >= 0 && token < dtable.rows, "token \(token) outside 0..<\(dtable.rows)")
            let doutRow = dout.base + i * dout.rowStride, dtableRow = dtable.base + token * dtable.rowStride
            for j in 0..<width { dtableRow[j] += doutRow[j] }
        }
    }
}
