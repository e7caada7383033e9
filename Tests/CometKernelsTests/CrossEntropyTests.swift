import TestSupport
import CometKernels
import Foundation
import XCTest

/// Cross-entropy: forward against log-sum-exp in Double, backward against
/// central differences; large logits, in-place backward and split rows.
final class CrossEntropyTests: XCTestCase {
    private let (rows, vocabulary) = (10, 11)
    private let targets = [0, 10, 4, 4, 7, 1, 9, 2, 10, 5]

    /// logits [10, 11] in [-3, 3).
    private func logits() -> Matrix { randomMatrix(rows: rows, columns: vocabulary, scale: 3, seed: 41) }

    /// Mean over rows of log sum_j exp(l_ij) - l_i,target, in Double, from the Float logits.
    private func referenceLoss(_ logits: Matrix) -> Double {
        let total = targets.enumerated().reduce(0.0) { total, item in
            let row = (0..<vocabulary).map { Double(logits.view[item.offset, $0]) }
            let largest = row.max()!
            return total + largest + log(row.map { exp($0 - largest) }.reduce(0, +)) - row[item.element]
        }
        return total / Double(rows)
    }

    func testForwardMatchesLogSumExp() {
        let logits = logits()
        // Float log-sum-exp of values of a few units: a few ulps of the loss, about 2.5.
        XCTAssertEqual(crossEntropyForward(logits.view, targets: targets), referenceLoss(logits), accuracy: 1e-6)
    }

    /// Logits near 1000 overflow exp in Float and Double: the loss must not.
    func testForwardIsStableForLargeLogits() {
        let logits = logits()
        for i in 0..<(rows * vocabulary) { logits.storage[i] += 1000 }
        let loss = crossEntropyForward(logits.view, targets: targets)
        XCTAssertTrue(loss.isFinite)
        // ulp(1000) = 6e-5 in Float: the subtractions from the largest logit lose that much.
        XCTAssertEqual(loss, referenceLoss(logits), accuracy: 2e-4)
    }

    /// L = dloss * loss with dloss = 0.7; dlogits from `crossEntropyBackward` against
    /// central differences with step 1e-2 on every logit. dlogits starts as NaN: it is overwritten.
    ///
    /// Tolerance 2e-5 (absolute; dlogits are at most dloss / N = 0.07): with step
    /// 1e-2 truncation and Float rounding of the per-row losses both stay near 2e-6,
    /// and over 25 seeds the worst error was 4e-6. Leaving out dloss or 1/N is off
    /// by 3e-2 or more.
    func testBackwardMatchesCentralDifferences() {
        let logits = logits(), dlogits = nanMatrix(rows: rows, columns: vocabulary)
        let dloss: Float = 0.7
        crossEntropyBackward(logits.view, targets: targets, dloss: dloss, into: dlogits.view)
        let worst = worstGradientError(dlogits, of: logits, step: 1e-2) {
            Double(dloss) * crossEntropyForward(logits.view, targets: targets)
        }
        XCTAssertLessThanOrEqual(worst.error, 2e-5, "dlogits[\(worst.index / vocabulary), \(worst.index % vocabulary)]")
    }

    /// dlogits may be logits itself: the same values, bit for bit.
    func testBackwardInPlace() {
        let logits = logits(), dlogits = Matrix(rows: rows, columns: vocabulary)
        crossEntropyBackward(logits.view, targets: targets, dloss: 1, into: dlogits.view)
        crossEntropyBackward(logits.view, targets: targets, dloss: 1, into: logits.view)
        XCTAssertEqual(logits.elements, dlogits.elements)
    }

    /// Rows split in two parts (targets as slices whose indices do not start at 0):
    /// the parts' losses weighted by their shares of rows give the whole loss, and
    /// dloss times the share gives the whole gradient.
    func testSplitRowsAddUpToTheWhole() {
        let logits = logits(), whole = Matrix(rows: rows, columns: vocabulary)
        crossEntropyBackward(logits.view, targets: targets, dloss: 1, into: whole.view)
        let parts = nanMatrix(rows: rows, columns: vocabulary)
        var loss = 0.0
        for part in [0..<4, 4..<rows] {
            let share = Double(part.count) / Double(rows)
            loss += share * crossEntropyForward(logits.view.rows(part), targets: targets[part])
            crossEntropyBackward(logits.view.rows(part), targets: targets[part], dloss: Float(share),
                                 into: parts.view.rows(part))
        }
        XCTAssertEqual(loss, crossEntropyForward(logits.view, targets: targets), accuracy: 1e-12)
        // dloss * share / rows in Float differs from 1 / rows by an ulp or so.
        XCTAssertLessThanOrEqual(largestDifference(parts, whole), 1e-8)
    }
}
