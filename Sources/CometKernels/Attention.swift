// Causal multi-head self-attention on fused q|k|v rows, before the output projection.
//
// Shapes, for B sequences of T tokens, C channels, NH heads of hs = C / NH channels:
//   qkv [B*T, 3C]: row b*T + t holds q | k | v of token t of sequence b; head h
//     uses columns h*hs ..< (h+1)*hs of each of the three blocks.
//   probabilities [B*NH*T, T]: per (b, h) the rows (b*NH + h)*T ..< +T hold
//     P = softmax(q k^T / sqrt(hs)) with the causal mask (0 above the diagonal).
//   out [B*T, C]: head h's output P v in columns h*hs ..< (h+1)*hs.
// Sequences are independent: to split the work, call on row ranges of qkv, out
// and probabilities that hold whole sequences.

/// out = softmax(q k^T / sqrt(hs), causal) v per sequence and head; saves the
/// probabilities for `attentionBackward`.
///
/// qkv [B*T, 3C]; probabilities [B*NH*T, T], overwritten; out [B*T, C], overwritten.
public func attentionForward(
    _ qkv: MatrixView, heads: Int, sequenceLength: Int, probabilities: MatrixView, into out: MatrixView
) {
    let shape = AttentionShape(qkv, heads: heads, sequenceLength: sequenceLength, probabilities: probabilities)
    precondition(out.rows == qkv.rows && out.columns == shape.channels, "attention output must be [B*T, C]")
    let t = sequenceLength
    for b in 0..<shape.sequences {
        let tokens = (b * t)..<((b + 1) * t)
        for h in 0..<heads {
            let (q, k, v) = shape.headViews(qkv.rows(tokens), head: h)
            let p = shape.probabilities(probabilities, sequence: b, head: h)
            shape.batched {
                gemm(q, k, into: p, transB: .transposed, alpha: shape.scale)
                causalSoftmax(p)
                gemm(p, v, into: shape.headColumns(out.rows(tokens), head: h))
            }
        }
    }
}

/// Backward of `attentionForward`, per sequence and head with dS = P * (dP - rowsum(P * dP)):
/// dv = P^T dout, dP = dout v^T, dq = dS k / sqrt(hs), dk = dS^T q / sqrt(hs).
///
/// dout [B*T, C]; qkv [B*T, 3C] and probabilities [B*NH*T, T] as after the forward;
/// dqkv [B*T, 3C], overwritten. Allocates one [T, T] scratch per call.
public func attentionBackward(
    _ dout: MatrixView, qkv: MatrixView, heads: Int, sequenceLength: Int, probabilities: MatrixView,
    into dqkv: MatrixView
) {
    let shape = AttentionShape(qkv, heads: heads, sequenceLength: sequenceLength, probabilities: probabilities)
    precondition(dout.rows == qkv.rows && dout.columns == shape.channels, "attention output gradient must be [B*T, C]")
    precondition(dqkv.rows == qkv.rows && dqkv.columns == qkv.columns, "attention input gradient must be [B*T, 3C]")
    let t = sequenceLength
    let scoreGradient = Matrix(rows: t, columns: t)
    let ds = scoreGradient.view
    for b in 0..<shape.sequences {
        let tokens = (b * t)..<((b + 1) * t)
        for h in 0..<heads {
            let (q, k, v) = shape.headViews(qkv.rows(tokens), head: h)
            let (dq, dk, dv) = shape.headViews(dqkv.rows(tokens), head: h)
            let doutHead = shape.headColumns(dout.rows(tokens), head: h)
            let p = shape.probabilities(probabilities, sequence: b, head: h)
            shape.batched {
                gemm(p, doutHead, into: dv, transA: .transposed)
                gemm(doutHead, v, into: ds, transB: .transposed)
                softmaxBackwardInPlace(p, ds)
                gemm(ds, k, into: dq, alpha: shape.scale)
                gemm(ds, q, into: dk, transA: .transposed, alpha: shape.scale)
            }
        }
    }
}

/// The sizes of one attention call, checked against its buffers.
private struct AttentionShape {
    let sequences: Int
    let sequenceLength: Int
    let heads: Int
    /// C: model width, NH * hs.
    let channels: Int
    /// hs: channels per head.
    let headSize: Int
    /// 1 / sqrt(hs), applied to the scores.
    let scale: Float

    init(_ qkv: MatrixView, heads: Int, sequenceLength: Int, probabilities: MatrixView) {
        precondition(heads > 0 && sequenceLength > 0, "attention needs at least one head and one token")
        precondition(qkv.rows % sequenceLength == 0, "qkv has \(qkv.rows) rows, not whole sequences of \(sequenceLength)")
        precondition(qkv.columns % (3 * heads) == 0, "qkv columns \(qkv.columns) are not 3 x \(heads) heads")
        sequences = qkv.rows / sequenceLength
        self.sequenceLength = sequenceLength
        self.heads = heads
        channels = qkv.columns / 3
        headSize = channels / heads
        scale = 1 / Float(headSize).squareRoot()
        precondition(probabilities.rows == sequences * heads * sequenceLength && probabilities.columns == sequenceLength,
                     "attention probabilities must be [B*NH*T, T] = [\(sequences * heads * sequenceLength), \(sequenceLength)]")
    }

    /// Runs `body`, one sequence and head's work, as a piece of kernels batched over
    /// every sequence and head, as a GPU runs attention (`FusedKernel`).
    func batched(_ body: () -> Void) {
        FusedKernel.piece(rows: sequenceLength, ofRows: sequences * heads * sequenceLength, body)
    }

    /// Head `head`'s columns of a [rows, C] view.
    func headColumns(_ view: MatrixView, head: Int) -> MatrixView {
        view.columns((head * headSize)..<((head + 1) * headSize))
    }

    /// Head `head`'s q, k and v [rows, hs] in fused rows [rows, 3C].
    func headViews(_ fused: MatrixView, head: Int) -> (q: MatrixView, k: MatrixView, v: MatrixView) {
        (headColumns(fused.columns(0..<channels), head: head),
         headColumns(fused.columns(channels..<(2 * channels)), head: head),
         headColumns(fused.columns((2 * channels)..<(3 * channels)), head: head))
    }

    /// P [T, T] of sequence `sequence`, head `head`.
    func probabilities(_ all: MatrixView, sequence: Int, head: Int) -> MatrixView {
        let first = (sequence * heads + head) * sequenceLength
        return all.rows(first..<(first + sequenceLength))
    }
}

/// Scores [T, T] -> causal softmax in place: row i over columns 0...i, 0 above the diagonal.
private func causalSoftmax(_ scores: MatrixView) {
    elementwise("causal softmax", elements: scores.rows * scores.columns) {
        for i in 0..<scores.rows {
            let row = scores.base + i * scores.rowStride
            softmax(row, count: i + 1, into: row)
            (row + i + 1).update(repeating: 0, count: scores.columns - i - 1)
        }
    }
}

/// dP -> dS in place, dS = P * (dP - rowsum(P * dP)); P, dP [T, T]. Where P is 0
/// (above the diagonal) dS is 0 too.
private func softmaxBackwardInPlace(_ p: MatrixView, _ gradient: MatrixView) {
    elementwise("softmax backward", elements: p.rows * p.columns) {
        for i in 0..<p.rows {
            let pRow = p.base + i * p.rowStride, gRow = gradient.base + i * gradient.rowStride
            var weighted: Float = 0
            for j in 0..<p.columns { weighted += pRow[j] * gRow[j] }
            for j in 0..<p.columns { gRow[j] = pRow[j] * (gRow[j] - weighted) }
        }
    }
}
