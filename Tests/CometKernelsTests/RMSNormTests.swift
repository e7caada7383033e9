import TestSupport
import CometKernels
import Foundation
import XCTest

/// RMSNorm: forward against the formula in Double, backward against central differences.
final class RMSNormTests: XCTestCase {
    private let (rows, channels) = (10, 8)

    /// x [10, 8] in [-2, 2), one row scaled down to 1e-3 so that eps matters in it.
    private func input() -> Matrix {
        let x = randomMatrix(rows: rows, columns: channels, scale: 2, seed: 21)
        for j in 0..<channels { x.view[3, j] *= 1e-3 }
        return x
    }

    /// weight [C] in [0.5, 1.5).
    private func weight() -> Matrix {
        let weight = randomMatrix(rows: 1, columns: channels, scale: 0.5, seed: 22)
        for j in 0..<channels { weight.storage[j] += 1 }
        return weight
    }

    func testForwardMatchesTheFormula() {
        let x = input(), weight = weight()
        let out = nanMatrix(rows: rows, columns: channels), rstd = nanMatrix(rows: 1, columns: rows)
        rmsNormForward(x.view, weight: weight.view, rstd: rstd.view, into: out.view)
        for i in 0..<rows {
            let meanSquare = (0..<channels).map { Double(x.view[i, $0]) * Double(x.view[i, $0]) }.reduce(0, +) / Double(channels)
            let expectedRstd = 1 / (meanSquare + Double(rmsNormEpsilon)).squareRoot()
            // Float arithmetic on C = 8 terms: a few ulps.
            XCTAssertEqual(Double(rstd.storage[i]), expectedRstd, accuracy: 1e-6 * expectedRstd, "rstd[\(i)]")
            for j in 0..<channels {
                let expected = Double(x.view[i, j]) * expectedRstd * Double(weight.storage[j])
                XCTAssertEqual(Double(out.view[i, j]), expected, accuracy: 1e-6 * max(1, abs(expected)), "out[\(i), \(j)]")
            }
        }
    }

    /// L = sum(out * G); dx and dweight from `rmsNormBackward(G)` against central
    /// differences on every element of x and of weight, for x of scale 1 and of scale
    /// 3e-3, where mean(x^2) is below eps. Out does not depend on the scale s of x
    /// but through eps, so dx grows as 1/s: steps on x are 3e-3 s (3e-3 on weight)
    /// and errors in dx are compared times s.
    ///
    /// Tolerance 5e-4 (absolute, on gradients of order 1): step 3e-3 balances the
    /// truncation error (h^2/6 times the third derivative) against Float rounding
    /// of out (a few ulps of the 8 outputs of a row, divided by 2h); over 25 seeds
    /// the worst error was 1e-4. Dropping the mean term of dx, or eps from rstd in
    /// the backward, is off by 0.1 or more.
    func testBackwardMatchesCentralDifferences() {
        for scale: Float in [1, 3e-3] {
            let x = randomMatrix(rows: rows, columns: channels, scale: scale, seed: 21), weight = weight()
            let g = randomMatrix(rows: rows, columns: channels, seed: 23)
            let out = Matrix(rows: rows, columns: channels), rstd = Matrix(rows: 1, columns: rows)
            let dx = nanMatrix(rows: rows, columns: channels), dweight = Matrix(rows: 1, columns: channels)
            rmsNormForward(x.view, weight: weight.view, rstd: rstd.view, into: out.view)
            rmsNormBackward(g.view, x: x.view, weight: weight.view, rstd: rstd.view,
                            into: dx.view, accumulating: dweight.view)
            let loss = {
                rmsNormForward(x.view, weight: weight.view, rstd: rstd.view, into: out.view)
                return dot(out, g)
            }
            let worstX = worstGradientError(dx, of: x, step: 3e-3 * scale, loss)
            XCTAssertLessThanOrEqual(worstX.error * Double(scale), 5e-4,
                                     "scale \(scale): dx[\(worstX.index / channels), \(worstX.index % channels)]")
            let worstWeight = worstGradientError(dweight, of: weight, step: 3e-3, loss)
            XCTAssertLessThanOrEqual(worstWeight.error, 5e-4, "scale \(scale): dweight[\(worstWeight.index)]")
        }
    }

    /// dx is overwritten, dweight accumulated.
    func testBackwardOverwritesDxAndAccumulatesDweight() {
        let x = input(), weight = weight(), g = randomMatrix(rows: rows, columns: channels, seed: 23)
        let out = Matrix(rows: rows, columns: channels), rstd = Matrix(rows: 1, columns: rows)
        rmsNormForward(x.view, weight: weight.view, rstd: rstd.view, into: out.view)
        let freshDx = Matrix(rows: rows, columns: channels), freshDweight = Matrix(rows: 1, columns: channels)
        rmsNormBackward(g.view, x: x.view, weight: weight.view, rstd: rstd.view,
                        into: freshDx.view, accumulating: freshDweight.view)
        let dx = randomMatrix(rows: rows, columns: channels, seed: 24)
        let start = randomMatrix(rows: 1, columns: channels, seed: 25), dweight = randomMatrix(rows: 1, columns: channels, seed: 25)
        rmsNormBackward(g.view, x: x.view, weight: weight.view, rstd: rstd.view,
                        into: dx.view, accumulating: dweight.view)
        XCTAssertEqual(dx.elements, freshDx.elements)
        for j in 0..<channels {
            // The two differ only in the order of roundings (about 1e-6); overwriting
            // would be off by |start|, about 0.5.
            XCTAssertEqual(dweight.storage[j], start.storage[j] + freshDweight.storage[j], accuracy: 1e-4, "dweight[\(j)]")
        }
    }

    /// Rows split in two parts, each with its columns of rstd and its own dweight:
    /// the same out, rstd and dx bit for bit, and dweights that add up to the whole.
    func testSplitRowsMatchTheWhole() {
        let x = input(), weight = weight(), g = randomMatrix(rows: rows, columns: channels, seed: 23)
        let out = Matrix(rows: rows, columns: channels), rstd = Matrix(rows: 1, columns: rows)
        let dx = Matrix(rows: rows, columns: channels), dweight = Matrix(rows: 1, columns: channels)
        rmsNormForward(x.view, weight: weight.view, rstd: rstd.view, into: out.view)
        rmsNormBackward(g.view, x: x.view, weight: weight.view, rstd: rstd.view, into: dx.view, accumulating: dweight.view)

        let partOut = nanMatrix(rows: rows, columns: channels), partRstd = nanMatrix(rows: 1, columns: rows)
        let partDx = nanMatrix(rows: rows, columns: channels), partDweight = Matrix(rows: 1, columns: channels)
        for part in [0..<4, 4..<rows] {
            let ownDweight = Matrix(rows: 1, columns: channels)
            rmsNormForward(x.view.rows(part), weight: weight.view, rstd: partRstd.view.columns(part),
                           into: partOut.view.rows(part))
            rmsNormBackward(g.view.rows(part), x: x.view.rows(part), weight: weight.view, rstd: partRstd.view.columns(part),
                            into: partDx.view.rows(part), accumulating: ownDweight.view)
            for j in 0..<channels { partDweight.storage[j] += ownDweight.storage[j] }
        }
        XCTAssertEqual(partOut.elements, out.elements)
        XCTAssertEqual(partRstd.elements, rstd.elements)
        XCTAssertEqual(partDx.elements, dx.elements)
        // Sums of 10 terms below 3 in a different order: a few ulps.
        XCTAssertLessThanOrEqual(largestDifference(partDweight, dweight), 1e-5)
    }
}
