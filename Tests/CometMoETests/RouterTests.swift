import TestSupport
import CometKernels
import CometMoE
import Foundation
import XCTest

/// `Router.forward` against an independent softmax and top-k in Double.
final class RouterTests: XCTestCase {
    private let (tokens, modelWidth) = (40, 6)

    private func router(experts: Int, topK: Int, imbalance: Double = 0.2, routing: RoutingSource = .learned) -> Router {
        var config = MoEConfig()
        (config.modelWidth, config.experts, config.topK) = (modelWidth, experts, topK)
        config.imbalance = imbalance  // by default a bias that makes the shares uneven
        config.routing = routing
        return Router(config: config)
    }

    /// Quota routing gives every expert exactly its share (largest remainder of exp(bias)
    /// over the T k choices), k different experts per token, and every quarter of the
    /// tokens a quarter of each expert's rows (within 15%); weights renormalise the chosen
    /// probabilities.
    func testQuotasGiveEachExpertItsShareInEveryChunk() {
        for (experts, topK, imbalance, tokens) in [(8, 2, 0.0, 2048), (8, 2, 0.05, 2048), (16, 4, 0.1, 1000), (4, 4, 0.2, 64)] {
            let router = router(experts: experts, topK: topK, imbalance: imbalance, routing: .quotas)
            let label = "E=\(experts) k=\(topK) imbalance \(imbalance) T=\(tokens)"
            let x = randomMatrix(rows: tokens, columns: modelWidth, seed: 3)
            let routing = router.forward(x.view)
            let shares = router.bias.map { exp(Double($0)) }, total = shares.reduce(0, +)
            let exact = shares.map { $0 / total * Double(tokens * topK) }
            for expert in 0..<experts {
                // No expert takes a token twice; below that cap, each its share.
                XCTAssertLessThanOrEqual(routing.expertLoad[expert], tokens, label)
                if exact.allSatisfy({ $0 <= Double(tokens) }) {
                    XCTAssertLessThanOrEqual(abs(Double(routing.expertLoad[expert]) - exact[expert]), 1, label)
                }
            }
            XCTAssertEqual(routing.expertLoad.reduce(0, +), tokens * topK, label)
            for token in 0..<tokens {
                let slots = (token * topK)..<((token + 1) * topK)
                XCTAssertEqual(Set(routing.choices[slots]).count, topK, "\(label): token \(token)'s experts differ")
                XCTAssertEqual(Double(routing.weights[slots].reduce(0, +)), 1, accuracy: 1e-5, label)
            }
            let quarter = tokens / 4
            for chunk in 0..<4 {
                let choices = routing.choices[(chunk * quarter * topK)..<((chunk + 1) * quarter * topK)]
                for expert in 0..<experts {
                    let expected = Double(routing.expertLoad[expert]) / 4
                    XCTAssertEqual(Double(choices.filter { $0 == expert }.count), expected, accuracy: max(3, 0.15 * expected),
                                   "\(label): expert \(expert) in quarter \(chunk)")
                }
            }
        }
    }

    func testRoutingInvariants() {
        for (experts, topK) in [(8, 3), (4, 1), (4, 4)] {
            let router = router(experts: experts, topK: topK)
            let x = randomMatrix(rows: tokens, columns: modelWidth, seed: 21)
            let routing = router.forward(x.view)
            let label = "E = \(experts), top-k \(topK)"
            XCTAssertEqual(routing.choices.count, tokens * topK, label)
            var load = [Int](repeating: 0, count: experts)
            var meanProbability = [Double](repeating: 0, count: experts)
            for token in 0..<tokens {
                // softmax(x Wg + bias), in Double.
                let logits = (0..<experts).map { e in
                    (0..<modelWidth).reduce(Double(router.bias[e])) { $0 + Double(x.view[token, $1]) * Double(router.gate[$1, e]) }
                }
                let exponentials = logits.map { exp($0 - logits.max()!) }
                let probabilities = exponentials.map { $0 / exponentials.reduce(0, +) }
                for e in 0..<experts {
                    XCTAssertEqual(Double(routing.probabilities.view[token, e]), probabilities[e], accuracy: 1e-6, label)
                    meanProbability[e] += probabilities[e] / Double(tokens)
                }

                let slots = (token * topK)..<((token + 1) * topK)
                let chosen = Array(routing.choices[slots])
                XCTAssertTrue(chosen.allSatisfy { (0..<experts).contains($0) }, "\(label): \(chosen)")
                XCTAssertEqual(Set(chosen).count, topK, "\(label): choices of token \(token) repeat: \(chosen)")
                // Order and weights by the router's own (Float) probabilities, so that near-ties agree.
                let routerProbability = { (e: Int) in Double(routing.probabilities.view[token, e]) }
                let chosenProbability = chosen.map(routerProbability)
                XCTAssertTrue(zip(chosenProbability, chosenProbability.dropFirst()).allSatisfy { $0 >= $1 },
                              "\(label): choices of token \(token) not by decreasing probability: \(chosenProbability)")
                let largestLeft = (0..<experts).filter { !chosen.contains($0) }.map(routerProbability).max() ?? 0
                XCTAssertLessThanOrEqual(largestLeft, chosenProbability.last!, "\(label): token \(token) missed a top-k expert")

                let weights = routing.weights[slots].map(Double.init)
                XCTAssertEqual(weights.reduce(0, +), 1, accuracy: 1e-6, label)
                let chosenSum = chosenProbability.reduce(0, +)
                for (weight, probability) in zip(weights, chosenProbability) {
                    XCTAssertEqual(weight, probability / chosenSum, accuracy: 1e-6, label)
                }
                for e in chosen { load[e] += 1 }
            }
            XCTAssertEqual(routing.expertLoad, load, label)
            // E * sum_e f_e P_e with f_e = load_e / (T k) and P_e the mean probability: since
            // sum_e f_e = 1 and each P_e agrees to 1e-6, the two agree to E * 1e-6.
            let aux = Double(experts) * (0..<experts).reduce(0) { $0 + Double(load[$1]) / Double(tokens * topK) * meanProbability[$1] }
            XCTAssertEqual(Double(routing.auxLoss), aux, accuracy: Double(experts) * 1e-6, label)
        }
    }

    func testNoTokensRouteToNothing() {
        let routing = router(experts: 4, topK: 2).forward(Matrix(rows: 0, columns: modelWidth).view)
        XCTAssertEqual(routing.choices, [])
        XCTAssertEqual(routing.weights, [])
        XCTAssertEqual(routing.expertLoad, [0, 0, 0, 0])
        XCTAssertEqual(routing.auxLoss, 0)
    }
}
