import CometKernels
import Foundation

/// The router's decisions for T tokens.
public struct Routing: @unchecked Sendable {
    public let tokens: Int
    public let experts: Int
    public let topK: Int
    /// softmax(x Wg + bias) [T, E].
    public let probabilities: Matrix
    /// Chosen experts [T, k], by decreasing probability (ties: lower index first), or
    /// by quota (`RoutingSource.quotas`).
    public let choices: [Int]
    /// The choices' probabilities renormalised to sum to 1 per token [T, k].
    public let weights: [Float]
    /// Assignments per expert on this rank [E].
    public let expertLoad: [Int]
    /// Switch-style load-balancing loss on this rank's tokens: E * sum_e f_e * P_e,
    /// f_e = load_e / (T k), P_e = mean over tokens of probability e.
    public let auxLoss: Float
}

/// How the router chooses each token's experts (`--routing`).
public enum RoutingSource: String, Codable, Sendable, CaseIterable {
    /// By the gate's scores: top-k of softmax(x Wg + bias), as training learns it.
    case learned
    /// By quota: each rank gives every expert exactly its target share of its T k
    /// choices, as the paper's layer benchmarks route; the gate's probabilities still
    /// weight the outputs. What a time-only run routes by (its scores mean nothing).
    case quotas
}

/// Linear gate, softmax, top-k and renormalised top-k weights.
///
/// The gate is replicated on every rank (data parallel); `bias` is a fixed,
/// untrained offset that steers the share of tokens each expert gets.
public final class Router: @unchecked Sendable {
    /// Wg [N, E], in `parameters`.
    public let gate: MatrixView
    /// dL/dWg [N, E], accumulated by `backward`.
    public let gateGradient: MatrixView
    /// Fixed logit offsets [E].
    public var bias: [Float]
    public let topK: Int
    /// Whether the gate's scores or the experts' quotas choose each token's experts.
    public let source: RoutingSource
    /// The allocation `gate` lives in.
    public let parameters: ParameterSet

    /// The router's tensor, named under `prefix`: the gate, replicated on every rank.
    public static func parameterTensors(config: MoEConfig, prefix: String) -> [ParameterSet.Tensor] {
        [("\(prefix)gate", [config.modelWidth, config.experts], true, true)]
    }

    /// A router whose gate lives in `parameters` under `prefix` (or in an allocation
    /// of its own), initialised from the configuration's seed.
    public init(config: MoEConfig, parameters: ParameterSet? = nil, prefix: String = "router.") {
        let n = config.modelWidth
        self.parameters = parameters ?? ParameterSet(Router.parameterTensors(config: config, prefix: prefix))
        gate = self.parameters.view("\(prefix)gate")
        gateGradient = self.parameters.gradient("\(prefix)gate")
        topK = config.topK
        source = config.routing
        var generator = SeededGenerator(seed: config.seed &* 0x9E37_79B9 &+ 17)
        // Logits of uniform tokens get a spread of about 1.3, like Gumbel noise, so that
        // top-k over (log share + noise) gives each expert about its target share.
        gate.randomize(scale: 3.9 / Float(n).squareRoot(), &generator)
        bias = Router.shareBias(experts: config.experts, imbalance: config.imbalance, &generator)
    }

    /// log of target shares whose standard deviation is `imbalance`.
    static func shareBias(experts: Int, imbalance: Double, _ generator: inout SeededGenerator) -> [Float] {
        guard imbalance > 0, experts > 1 else { return [Float](repeating: 0, count: experts) }
        var z = (0..<experts).map { _ in Double(generator.uniform(1)) }
        let mean = z.reduce(0, +) / Double(experts)
        z = z.map { $0 - mean }
        let std = (z.map { $0 * $0 }.reduce(0, +) / Double(experts)).squareRoot()
        let shares = z.map { max(1e-3, 1 / Double(experts) + imbalance * $0 / max(std, 1e-12)) }
        let total = shares.reduce(0, +)
        return shares.map { Float(log($0 / total * Double(experts))) }
    }

    /// Routes x [T, N].
    public func forward(_ x: MatrixView) -> Routing {
        let (t, e, k) = (x.rows, gate.columns, topK)
        let probabilities = Matrix(rows: t, columns: e)
        let p = probabilities.view
        gemm(x, gate, into: p)
        let quota = source == .quotas
        var choices = quota ? quotaChoices(tokens: t) : [Int](repeating: 0, count: t * k)
        var weights = [Float](repeating: 0, count: t * k)
        var meanProbability = [Double](repeating: 0, count: e)
        elementwise("router softmax and top-k", elements: t * e) {
            for token in 0..<t {
                let row = p.base + token * e
                var largest = -Float.infinity
                for j in 0..<e {
                    row[j] += bias[j]
                    largest = max(largest, row[j])
                }
                var sum: Float = 0
                for j in 0..<e {
                    row[j] = exp(row[j] - largest)
                    sum += row[j]
                }
                for j in 0..<e {
                    row[j] /= sum
                    meanProbability[j] += Double(row[j])
                }
                if !quota { Router.selectTopK(row, experts: e, into: &choices[(token * k)..<(token * k + k)]) }
                var chosenSum: Float = 0
                for slot in 0..<k { chosenSum += row[choices[token * k + slot]] }
                for slot in 0..<k { weights[token * k + slot] = row[choices[token * k + slot]] / chosenSum }
            }
        }
        var load = [Int](repeating: 0, count: e)
        for choice in choices { load[choice] += 1 }
        var aux: Double = 0
        if t > 0 {
            for j in 0..<e { aux += Double(load[j]) / Double(t * k) * meanProbability[j] / Double(t) }
            aux *= Double(e)
        }
        return Routing(tokens: t, experts: e, topK: k, probabilities: probabilities, choices: choices,
                       weights: weights, expertLoad: load, auxLoss: Float(aux))
    }

    /// The `slots.count` largest of `row`'s `experts` probabilities, largest first
    /// (ties: lower index first), by selection: k is small.
    private static func selectTopK(_ row: UnsafeMutablePointer<Float>, experts: Int, into slots: inout ArraySlice<Int>) {
        for slot in slots.indices {
            var best = -1
            for j in 0..<experts where !slots[slots.startIndex..<slot].contains(j) {
                if best < 0 || row[j] > row[best] { best = j }
            }
            slots[slot] = best
        }
    }

    /// Choices [T, k] that give each expert exactly its target share of the T k
    /// (`RoutingSource.quotas`): quotas by largest remainder, none above T, laid out
    /// expert by expert along slot-major positions: position s is the choice s / T of
    /// token (s mod T) P mod T, P near T over the golden ratio and prime to T. An
    /// expert's run of at most T positions then holds distinct tokens spread evenly over
    /// 0..<T, so a token's k experts differ and every range of tokens (a chunk) sees
    /// every expert at its share.
    func quotaChoices(tokens t: Int) -> [Int] {
        let e = bias.count, rows = t * topK
        let shares = bias.map { exp(Double($0)) }, total = shares.reduce(0, +)
        let exact = shares.map { $0 / total * Double(rows) }
        var quotas = exact.map { min(t, Int($0)) }
        // The rows left go to the experts with the largest remainders and room below T.
        let order = (0..<e).sorted { exact[$0] - Double(quotas[$0]) > exact[$1] - Double(quotas[$1]) }
        var left = rows - quotas.reduce(0, +)
        while left > 0 {
            for expert in order where left > 0 && quotas[expert] < t {
                quotas[expert] += 1
                left -= 1
            }
        }
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        var stride = max(1, Int((Double(t) * 0.618_033_988_7).rounded()))
        while gcd(stride, t) != 1 { stride += 1 }
        var choices = [Int](repeating: 0, count: rows), position = 0
        for (expert, quota) in quotas.enumerated() {
            for _ in 0..<quota {
                choices[(position % t) * stride % t * topK + position / t] = expert
                position += 1
            }
        }
        return choices
    }

    /// Backward of `forward`: accumulates dx [T, N] and `gateGradient` from
    /// dL/dweights [T, k] and dL/dauxLoss.
    public func backward(
        _ x: MatrixView, _ routing: Routing, weightGradients: [Float], auxLossGradient: Float, inputGradient dx: MatrixView
    ) {
        let (t, e, k) = (routing.tokens, routing.experts, routing.topK)
        guard t > 0 else { return }
        let logitGradient = Matrix(rows: t, columns: e)
        let dLogits = logitGradient.view
        let p = routing.probabilities.view
        // Through the load-balancing loss: f_e is counted, not differentiated.
        let auxScale = auxLossGradient * Float(e) / Float(t)
        let auxGradient = routing.expertLoad.map { auxScale * Float($0) / Float(t * k) }
        var dp = [Float](repeating: 0, count: e)
        elementwise("router backward", elements: t * e) {
            for token in 0..<t {
                for j in 0..<e { dp[j] = auxGradient[j] }
                // Through the renormalisation w_i = p_i / S.
                var chosenSum: Float = 0, weighted: Float = 0
                for slot in 0..<k {
                    chosenSum += p[token, routing.choices[token * k + slot]]
                    weighted += weightGradients[token * k + slot] * routing.weights[token * k + slot]
                }
                for slot in 0..<k {
                    dp[routing.choices[token * k + slot]] += (weightGradients[token * k + slot] - weighted) / chosenSum
                }
                // Through the softmax.
                var dot: Float = 0
                for j in 0..<e { dot += p[token, j] * dp[j] }
                for j in 0..<e { dLogits[token, j] = p[token, j] * (dp[j] - dot) }
            }
        }
        gemm(x, dLogits, into: gateGradient, transA: .transposed, beta: 1)
        gemm(dLogits, gate, into: dx, transB: .transposed, beta: 1)
    }
}
