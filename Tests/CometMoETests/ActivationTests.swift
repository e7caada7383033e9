import TestSupport
import CometKernels
import Foundation
import XCTest

/// GELU and SwiGLU: forward against their textbook formulas in Double, backward
/// against central differences of forward.
final class ActivationTests: XCTestCase {
    private let (tokens, hidden) = (4, 7)

    /// Pre-activations A [tokens, width] in [-4, 4): the tails are where a fast GELU goes wrong.
    private func preActivations(_ activation: Activation) -> Matrix {
        randomMatrix(rows: tokens, columns: activation.width(hidden: hidden), scale: 4, seed: 11)
    }

    func testForwardMatchesTheTextbookFormulas() {
        func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        for activation in Activation.allCases {
            let a = preActivations(activation), h = Matrix(rows: tokens, columns: hidden)
            activation.forward(a.view, into: h.view)
            for i in 0..<tokens {
                for j in 0..<hidden {
                    let x = Double(a.view[i, j])
                    let expected = switch activation {
                    case .gelu: 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
                    case .swiglu: x * sigmoid(x) * Double(a.view[i, hidden + j])
                    }
                    // Float evaluation: a few ulps of values up to about 16.
                    XCTAssertEqual(Double(h.view[i, j]), expected, accuracy: 1e-6 * max(1, abs(expected)),
                                   "\(activation) at [\(i), \(j)], a = \(x)")
                }
            }
        }
    }

    /// L = sum(act(A) * G); dL/dA from `backward(A, G)` against central differences
    /// with step 1e-2 on every element of A.
    ///
    /// Tolerance 2e-4 (absolute, on derivatives of order 1): the truncation error
    /// h^2/6 f''' is below about 5e-5 here, and Float rounding of the one output
    /// a step changes adds |g| ulp(h) / 2h, about 2e-5; a wrong term in a
    /// derivative is off by 1e-2 or more.
    func testBackwardMatchesCentralDifferences() {
        for activation in Activation.allCases {
            let a = preActivations(activation), h = Matrix(rows: tokens, columns: hidden)
            let g = randomMatrix(rows: tokens, columns: hidden, seed: 12)
            let da = Matrix(rows: a.rows, columns: a.columns)
            activation.backward(a.view, g.view, into: da.view)
            for index in 0..<(a.rows * a.columns) {
                let numeric = centralDifference(a.storage, index, step: 1e-2) {
                    activation.forward(a.view, into: h.view)
                    return dot(h, g)
                }!
                XCTAssertEqual(Double(da.storage[index]), numeric, accuracy: 2e-4,
                               "\(activation): dA[\(index / a.columns), \(index % a.columns)], a = \(a.storage[index])")
            }
        }
    }
}
