import TestSupport
import CometKernels
import CometMoE
import XCTest

/// `ReferenceLayer.backward` against central differences of `forward`, on a layer
/// small enough to perturb coordinate by coordinate: two "ranks" of 5 and 3
/// tokens, N = 6, K = 5, E = 4, top-k 2, and the loss
///
///     L = sum_r <y_r, g_r> + c sum_r aux_r
///
/// for fixed random g_r, where aux_r is rank r's load-balancing loss.
final class ReferenceGradientTests: XCTestCase {
    func testGELUGradients() { checkGradients(.gelu, gScale: 1, auxWeight: 0.5) }

    func testSwiGLUGradients() { checkGradients(.swiglu, gScale: 1, auxWeight: 0.5) }

    /// The load-balancing term alone (g = 0), so that an error in its gradient
    /// cannot hide behind the larger gradient of the output term.
    func testLoadBalancingLossGradients() { checkGradients(.gelu, gScale: 0, auxWeight: 1) }

    /// Checks dx of every rank, dWg, dW1 and dW2 on 44 sampled coordinates; g is
    /// uniform in [-gScale, gScale), c = `auxWeight`.
    ///
    /// Step 1e-2, tolerance 5e-5 + 1e-3 |dL/dv|. The forward runs in Float, so
    /// rounding L (terms of order 1, relative error about 1e-7) costs about
    /// 1e-7 / 2h = 5e-6 in the difference quotient, and truncation h^2 L''' / 6
    /// about 1e-5 of a gradient; a step of 1e-3 would make rounding ten times worse.
    /// The worst difference seen is 7e-6, while the gradients run mostly from 1e-3 to 0.3:
    /// a missing term or a wrong factor in any of them fails.
    private func checkGradients(
        _ activation: Activation, gScale: Float, auxWeight: Float, file: StaticString = #filePath, line: UInt = #line
    ) {
        var config = MoEConfig()
        (config.modelWidth, config.hiddenWidth, config.experts, config.topK) = (6, 5, 4, 2)
        (config.activation, config.imbalance, config.seed) = (activation, 0.2, 3)
        let n = config.modelWidth
        let reference = ReferenceLayer(config: config, router: Router(config: config))
        let xs = [5, 3].enumerated().map { randomMatrix(rows: $1, columns: n, seed: 100 + UInt64($0)) }
        let gs = xs.indices.map { randomMatrix(rows: xs[$0].rows, columns: n, scale: gScale, seed: 200 + UInt64($0)) }

        _ = reference.forward(xs.map(\.view))
        let choices = reference.routings.map(\.choices)
        let dxs = reference.backward(xs.map(\.view), gs.map(\.view), auxLossGradient: auxWeight)

        /// L at the current parameters, or nil when they change a top-k choice (L jumps there).
        func loss() -> Double? {
            let ys = reference.forward(xs.map(\.view))
            guard reference.routings.map(\.choices) == choices else { return nil }
            return zip(ys, gs).reduce(0) { $0 + dot($1.0, $1.1) }
                + Double(auxWeight) * reference.routings.reduce(0) { $0 + Double($1.auxLoss) }
        }

        // What is perturbed, its analytic gradient, and how many coordinates to sample.
        var parameters: [(name: String, values: UnsafeMutableBufferPointer<Float>, gradient: [Float], samples: Int)] =
            xs.indices.map { ("dx[\($0)]", xs[$0].storage, dxs[$0].elements, 6) }
        parameters.append(("router.gateGradient", reference.router.gate.buffer, reference.router.gateGradient.elements, 8))
        for e in 0..<config.experts {
            parameters.append(("experts.upGradient[\(e)]", reference.experts.up[e].buffer, reference.experts.upGradient[e].elements, 3))
            parameters.append(("experts.downGradient[\(e)]", reference.experts.down[e].buffer, reference.experts.downGradient[e].elements, 3))
        }

        var generator = SeededGenerator(seed: 7)
        var (checked, skipped) = (0, 0)
        for parameter in parameters {
            for index in parameter.gradient.indices.shuffled(using: &generator).prefix(parameter.samples) {
                guard let numeric = centralDifference(parameter.values, index, step: 1e-2, loss) else {
                    skipped += 1
                    continue
                }
                checked += 1
                let analytic = Double(parameter.gradient[index])
                XCTAssertEqual(analytic, numeric, accuracy: 5e-5 + 1e-3 * abs(numeric),
                               "\(activation): \(parameter.name) at \(index)", file: file, line: line)
            }
        }
        XCTAssertGreaterThanOrEqual(4 * checked, 3 * (checked + skipped),
                                    "\(skipped) of \(checked + skipped) perturbations changed the routing", file: file, line: line)
    }
}
