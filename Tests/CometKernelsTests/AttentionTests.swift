import TestSupport
import CometKernels
import Foundation
import XCTest

/// Causal multi-head self-attention: forward against an explicit loop in Double,
/// backward against central differences.
final class AttentionTests: XCTestCase {
    private let (sequences, length, channels, heads) = (2, 5, 8, 2)
    private var tokens: Int { sequences * length }

    /// qkv [B*T, 3C] in [-2, 2): scores of a few units, so the softmax is far from uniform.
    private func input() -> Matrix { randomMatrix(rows: tokens, columns: 3 * channels, scale: 2, seed: 31) }

    private func probabilityBuffer() -> Matrix { nanMatrix(rows: sequences * heads * length, columns: length) }

    func testForwardMatchesAnExplicitLoop() {
        let qkv = input(), probabilities = probabilityBuffer(), out = nanMatrix(rows: tokens, columns: channels)
        attentionForward(qkv.view, heads: heads, sequenceLength: length, probabilities: probabilities.view, into: out.view)
        let headSize = channels / heads
        let scale = 1 / Double(headSize).squareRoot()
        for b in 0..<sequences {
            for h in 0..<heads {
                for i in 0..<length {
                    let query = b * length + i
                    // Scores of the keys 0...i; later keys are masked.
                    let scores = (0...i).map { j in
                        (0..<headSize).reduce(0.0) { sum, d in
                            sum + Double(qkv.view[query, h * headSize + d]) * Double(qkv.view[b * length + j, channels + h * headSize + d])
                        } * scale
                    }
                    let largest = scores.max()!
                    let weights = scores.map { exp($0 - largest) }
                    let total = weights.reduce(0, +)
                    let probabilityRow = (b * heads + h) * length + i
                    for j in 0..<length {
                        let expected = j <= i ? weights[j] / total : 0
                        // Float softmax of scores of a few units: a few ulps.
                        XCTAssertEqual(Double(probabilities.view[probabilityRow, j]), expected, accuracy: 1e-6,
                                       "P[b \(b), h \(h), \(i), \(j)]")
                    }
                    for d in 0..<headSize {
                        let expected = (0...i).reduce(0.0) { sum, j in
                            sum + weights[j] / total * Double(qkv.view[b * length + j, 2 * channels + h * headSize + d])
                        }
                        XCTAssertEqual(Double(out.view[query, h * headSize + d]), expected, accuracy: 1e-6,
                                       "out[\(query), \(h * headSize + d)]")
                    }
                }
            }
        }
    }

    /// L = sum(out * G); dqkv from `attentionBackward(G)` against central differences
    /// with step 1e-2 on every element of qkv. dqkv starts as NaN: it is overwritten.
    ///
    /// Tolerance 3e-4 (absolute, on gradients of order 0.1 to 1): with step 1e-2 the
    /// truncation error (h^2/6 times the third derivative) and Float rounding of out
    /// (a few ulps of each of the up to T*hs outputs a step changes, divided by 2h)
    /// are both about 2e-5; over 25 seeds the worst error was 6e-5. A missing
    /// 1/sqrt(hs) or softmax term is off by 0.5 or more.
    func testBackwardMatchesCentralDifferences() {
        let qkv = input(), probabilities = probabilityBuffer(), out = Matrix(rows: tokens, columns: channels)
        let g = randomMatrix(rows: tokens, columns: channels, seed: 32)
        let dqkv = nanMatrix(rows: tokens, columns: 3 * channels)
        attentionForward(qkv.view, heads: heads, sequenceLength: length, probabilities: probabilities.view, into: out.view)
        attentionBackward(g.view, qkv: qkv.view, heads: heads, sequenceLength: length, probabilities: probabilities.view,
                          into: dqkv.view)
        let worst = worstGradientError(dqkv, of: qkv, step: 1e-2) {
            attentionForward(qkv.view, heads: heads, sequenceLength: length, probabilities: probabilities.view, into: out.view)
            return dot(out, g)
        }
        XCTAssertLessThanOrEqual(worst.error, 3e-4, "dqkv[\(worst.index / (3 * channels)), \(worst.index % (3 * channels))]")
    }

    /// Sequences are independent: the second sequence on its own (row ranges of
    /// every buffer, as a thread that takes one sequence passes them) gives the
    /// same output and gradient, bit for bit.
    func testOneSequenceAloneMatchesTheBatch() {
        let qkv = input(), g = randomMatrix(rows: tokens, columns: channels, seed: 32)
        let probabilities = probabilityBuffer(), out = Matrix(rows: tokens, columns: channels)
        let dqkv = Matrix(rows: tokens, columns: 3 * channels)
        attentionForward(qkv.view, heads: heads, sequenceLength: length, probabilities: probabilities.view, into: out.view)
        attentionBackward(g.view, qkv: qkv.view, heads: heads, sequenceLength: length, probabilities: probabilities.view,
                          into: dqkv.view)

        let partProbabilities = probabilityBuffer(), partOut = nanMatrix(rows: tokens, columns: channels)
        let partDqkv = nanMatrix(rows: tokens, columns: 3 * channels)
        let rows = length..<(2 * length), probabilityRows = (heads * length)..<(2 * heads * length)
        attentionForward(qkv.view.rows(rows), heads: heads, sequenceLength: length,
                         probabilities: partProbabilities.view.rows(probabilityRows), into: partOut.view.rows(rows))
        attentionBackward(g.view.rows(rows), qkv: qkv.view.rows(rows), heads: heads, sequenceLength: length,
                          probabilities: partProbabilities.view.rows(probabilityRows), into: partDqkv.view.rows(rows))
        for i in rows {
            for j in 0..<channels { XCTAssertEqual(partOut.view[i, j], out.view[i, j], "out[\(i), \(j)]") }
            for j in 0..<(3 * channels) { XCTAssertEqual(partDqkv.view[i, j], dqkv.view[i, j], "dqkv[\(i), \(j)]") }
        }
        for i in probabilityRows {
            for j in 0..<length { XCTAssertEqual(partProbabilities.view[i, j], probabilities.view[i, j], "P[\(i), \(j)]") }
        }
    }
}
