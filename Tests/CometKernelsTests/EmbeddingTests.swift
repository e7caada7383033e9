import TestSupport
import CometKernels
import XCTest

/// Token embedding: forward copies rows, backward scatter-adds, repeated tokens included.
final class EmbeddingTests: XCTestCase {
    private let (vocabulary, channels) = (11, 8)
    /// B*T = 10 tokens; 3 and 7 occur more than once, 0 and 10 are the ends of the range.
    private let tokens = [3, 7, 0, 3, 10, 7, 7, 1, 5, 3]

    func testForwardCopiesEachTokensRow() {
        let table = randomMatrix(rows: vocabulary, columns: channels, seed: 1)
        let out = nanMatrix(rows: tokens.count, columns: channels)
        embeddingForward(tokens: tokens, table: table.view, into: out.view)
        for (i, token) in tokens.enumerated() {
            for j in 0..<channels { XCTAssertEqual(out.view[i, j], table.view[token, j], "out[\(i), \(j)]") }
        }
    }

    /// L = sum(out * G), step 1e-2. L is linear in the table and out copies it
    /// exactly, so the central differences are exact but for Double rounding; the
    /// error is the Float rounding of dtable, a sum of up to three rows of |g| < 1:
    /// at most about 2e-7 (1.2e-7 measured over 10 seeds). Tolerance 1e-6; a
    /// missed repeat of a token is off by a whole |g|, about 0.5.
    func testBackwardMatchesCentralDifferences() {
        let table = randomMatrix(rows: vocabulary, columns: channels, seed: 1)
        let g = randomMatrix(rows: tokens.count, columns: channels, seed: 2)
        let out = Matrix(rows: tokens.count, columns: channels), dtable = Matrix(rows: vocabulary, columns: channels)
        embeddingBackward(tokens: tokens, dout: g.view, accumulating: dtable.view)
        let worst = worstGradientError(dtable, of: table, step: 1e-2) {
            embeddingForward(tokens: tokens, table: table.view, into: out.view)
            return dot(out, g)
        }
        XCTAssertLessThanOrEqual(worst.error, 1e-6, "dtable[\(worst.index / channels), \(worst.index % channels)]")
    }

    /// dtable is accumulated: a second call adds the same again, rows of tokens
    /// that do not occur stay as they were.
    func testBackwardAccumulates() {
        let g = randomMatrix(rows: tokens.count, columns: channels, seed: 2)
        let once = Matrix(rows: vocabulary, columns: channels)
        embeddingBackward(tokens: tokens, dout: g.view, accumulating: once.view)
        let start = randomMatrix(rows: vocabulary, columns: channels, seed: 3)
        let accumulated = randomMatrix(rows: vocabulary, columns: channels, seed: 3)
        embeddingBackward(tokens: tokens, dout: g.view, accumulating: accumulated.view)
        for row in 0..<vocabulary {
            for j in 0..<channels {
                // The two differ only in the order of roundings (below 1e-6); overwriting
                // would be off by |start|, about 0.5.
                XCTAssertEqual(accumulated.view[row, j], start.view[row, j] + once.view[row, j], accuracy: 1e-4)
                if !tokens.contains(row) { XCTAssertEqual(accumulated.view[row, j], start.view[row, j]) }
            }
        }
    }

    /// Rows and columns of larger buffers, and tokens given as a slice whose indices
    /// do not start at 0: what a thread that takes part of the work passes.
    func testSubViewsAndTokenSlices() {
        let table = randomMatrix(rows: vocabulary, columns: channels, seed: 1)
        let whole = Matrix(rows: tokens.count, columns: channels)
        embeddingForward(tokens: tokens, table: table.view, into: whole.view)
        let part = nanMatrix(rows: tokens.count, columns: channels)
        let (rows, columns) = (4..<9, 2..<7)
        embeddingForward(tokens: tokens[rows], table: table.view.columns(columns),
                         into: part.view.rows(rows).columns(columns))
        for i in rows {
            for j in columns { XCTAssertEqual(part.view[i, j], whole.view[i, j], "out[\(i), \(j)]") }
        }
    }
}
