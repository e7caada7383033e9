import CometCore
import CometKernels
import CometMPI
import CometMoE

/// The toy MoE transformer on one rank, llm.c style: token embedding, L blocks of
/// (RMSNorm -> causal self-attention -> residual -> RMSNorm -> MoE FFN -> residual),
/// a final RMSNorm, the LM head and cross-entropy.
///
/// Every parameter lives in one `ParameterSet`: the dense ones (embedding, norms,
/// attention, LM head, routers) are replicated and data parallel over the world,
/// and come first so that one all-reduce syncs their gradients; each block's
/// experts are sharded over the EP x TP ranks of the MoE group (K-shards with TP > 1).
public final class MoETransformer {
    public let config: TrainConfig
    public let vocabularySize: Int
    /// Sequences this rank processes per step (B / W).
    public let sequences: Int
    public let groups: ProcessGroups
    public let parameters: ParameterSet
    /// Each block's MoE FFN (router, experts and schedule).
    public let moe: [MoELayer]
    /// Elements of `parameters` that are replicated (the first ones).
    public let replicatedCount: Int
    /// The dense layers' work during the last forward and backward (the MoE layers keep their own).
    public let timeline: Timeline
    private let buffers: Activations

    /// Builds the model for `sequences` sequences per rank, its MoE layers' rows
    /// moving on `link`, all of it running on `device`; collective (the MoE layers
    /// may allocate windows).
    public init(
        config: TrainConfig, vocabularySize: Int, sequences: Int, groups: ProcessGroups, link: LinkModel, device: Device
    ) throws {
        self.config = config
        self.vocabularySize = vocabularySize
        self.sequences = sequences
        self.groups = groups
        let tokens = sequences * config.sequenceLength
        let moeConfig = config.moe(tokensPerRank: tokens)
        let (c, v) = (config.modelWidth, vocabularySize)
        var tensors: [ParameterSet.Tensor] = [("embedding", [v, c], true, true)]
        for layer in 0..<config.layers {
            let prefix = "blocks.\(layer)."
            tensors += [("\(prefix)norm1", [c], false, true), ("\(prefix)qkv", [c, 3 * c], true, true),
                        ("\(prefix)proj", [c, c], true, true), ("\(prefix)norm2", [c], false, true)]
            tensors += MoELayer.parameterTensors(config: moeConfig, ranks: groups.moe.size, rank: groups.moe.rank,
                                                 tensorParallel: groups.layout.tensorParallel, prefix: "\(prefix)moe.")
        }
        tensors += [("norm", [c], false, true), ("head", [c, v], true, true)]
        let ordered = tensors.filter(\.replicated) + tensors.filter { !$0.replicated }
        let parameters = ParameterSet(ordered)
        self.parameters = parameters
        replicatedCount = ordered.filter(\.replicated).reduce(0) { $0 + $1.shape.reduce(1, *) }
        moe = try (0..<config.layers).map { layer in
            let tp = groups.layout.tensorParallel
            return try MoELayer(
                config: moeConfig, group: groups.moe, tensorParallel: tp, schedule: config.schedule, options: config.scheduleOptions,
                link: link, device: device, parameters: parameters, prefix: "blocks.\(layer).moe.")
        }
        timeline = Timeline(clock: device.clock)
        buffers = Activations(config: config, tokens: tokens, vocabularySize: v)
        initializeDenseParameters()
    }

    /// Dense weights from the seed, the same on every rank: uniform with standard
    /// deviation 0.02 (the output projections scaled down by sqrt(2L)), norm gains 1.
    private func initializeDenseParameters() {
        var generator = SeededGenerator(seed: config.seed &+ 0xD15E)
        let scale = Float(0.02 * 3.0.squareRoot())
        for entry in parameters.entries where entry.replicated && !entry.name.contains(".moe.") {
            let view = parameters.view(entry.name)
            if !entry.decays {  // the norms' gains
                view.fill(1)
            } else {
                view.randomize(scale: entry.name.hasSuffix("proj") ? scale / Float(2 * config.layers).squareRoot() : scale, &generator)
            }
        }
    }

    /// Frees every block's MoE window (`MoELayer.release`); the model is not used after. Collective.
    public func release() throws {
        for layer in moe { try layer.release() }
    }

    /// Per block: bytes of this rank's busiest link queue (`queues`) in the block's
    /// last forward exchange; a backward exchanges as many.
    public func busiestLinkBytes(_ queues: LinkModel.Queues) -> [Int] {
        moe.map { ($0.lastPlan?.busiestLinkRows(queues) ?? 0) * config.modelWidth * MemoryLayout<Float>.stride }
    }

    /// What one forward pass measured on this rank.
    public struct Loss {
        /// Mean cross-entropy over this rank's predicted tokens, nats.
        public let crossEntropy: Double
        /// Mean over blocks of the load-balancing loss.
        public let aux: Double
        /// Assignments per expert over all blocks [E].
        public let expertLoad: [Int]
    }

    /// Forward over `tokens` [b, T + 1] (inputs are the first T of each row, targets the last T).
    /// Collective. Keeps what `backward` needs.
    @discardableResult
    public func forward(_ tokens: [Int32]) throws -> Loss {
        let (t, b) = (config.sequenceLength, buffers)
        precondition(tokens.count == sequences * (t + 1), "forward needs \(sequences) sequences of \(t + 1) tokens")
        b.inputs.removeAll(keepingCapacity: true)
        b.targets.removeAll(keepingCapacity: true)
        for sequence in 0..<sequences {
            let row: ArraySlice<Int32> = tokens[(sequence * (t + 1))..<((sequence + 1) * (t + 1))]
            b.inputs += row.dropLast().map { Int($0) }
            b.targets += row.dropFirst().map { Int($0) }
        }
        timeline.reset()
        timeline.record(.dense, thread: 0, "embedding") {
            embeddingForward(tokens: b.inputs, table: parameters.view("embedding"), into: b.residual[0].view)
        }
        var aux = 0.0
        var load = [Int](repeating: 0, count: config.experts)
        for layer in 0..<config.layers {
            let p = "blocks.\(layer)."
            let (x, mid) = (b.residual[layer].view, b.middle[layer].view)
            timeline.record(.dense, thread: 0, "block \(layer) attention") {
                rmsNormForward(x, weight: parameters.view("\(p)norm1"), rstd: b.rstd1[layer].view, into: b.norm1[layer].view)
                gemm(b.norm1[layer].view, parameters.view("\(p)qkv"), into: b.qkv[layer].view)
                attentionForward(b.qkv[layer].view, heads: config.heads, sequenceLength: t,
                                 probabilities: b.probabilities[layer].view, into: b.attention[layer].view)
                gemm(b.attention[layer].view, parameters.view("\(p)proj"), into: mid)
                add(x, into: mid)
                rmsNormForward(mid, weight: parameters.view("\(p)norm2"), rstd: b.rstd2[layer].view, into: b.norm2[layer].view)
            }
            let routing = try moe[layer].forward(b.norm2[layer].view, into: b.residual[layer + 1].view)
            add(mid, into: b.residual[layer + 1].view)
            aux += Double(routing.auxLoss) / Double(config.layers)
            for (expert, count) in routing.expertLoad.enumerated() { load[expert] += count }
        }
        let crossEntropy = timeline.record(.dense, thread: 0, "head and loss") {
            rmsNormForward(b.residual[config.layers].view, weight: parameters.view("norm"), rstd: b.rstdFinal.view,
                           into: b.normFinal.view)
            gemm(b.normFinal.view, parameters.view("head"), into: b.logits.view)
            return crossEntropyForward(b.logits.view, targets: b.targets)
        }
        return Loss(crossEntropy: crossEntropy, aux: aux, expertLoad: load)
    }

    /// Backward of the last `forward`, for the objective averaged over the world's
    /// tokens: cross-entropy plus `auxLossWeight` times the mean load-balancing loss.
    /// Accumulates every parameter's gradient on this rank (not yet synced).
    public func backward() throws {
        let (t, b, ranks) = (config.sequenceLength, buffers, Float(groups.world.size))
        timeline.record(.dense, thread: 0, "head and loss backward") {
            crossEntropyBackward(b.logits.view, targets: b.targets, dloss: 1 / ranks, into: b.logits.view)
            gemm(b.logits.view, parameters.view("head"), into: b.scratch.view, transB: .transposed)
            gemm(b.normFinal.view, b.logits.view, into: parameters.gradient("head"), transA: .transposed, beta: 1)
            rmsNormBackward(b.scratch.view, x: b.residual[config.layers].view, weight: parameters.view("norm"),
                            rstd: b.rstdFinal.view, into: b.dResidual.view, accumulating: parameters.gradient("norm"))
        }
        let auxGradient = config.auxLossWeight / (ranks * Float(config.layers))
        for layer in (0..<config.layers).reversed() {
            let p = "blocks.\(layer)."
            // residual[l+1] = middle + moe(norm2(middle))
            try moe[layer].backward(b.dResidual.view, auxLossGradient: auxGradient, into: b.scratch.view)
            timeline.record(.dense, thread: 0, "block \(layer) attention backward") {
                rmsNormBackward(b.scratch.view, x: b.middle[layer].view, weight: parameters.view("\(p)norm2"),
                                rstd: b.rstd2[layer].view, into: b.dMiddle.view, accumulating: parameters.gradient("\(p)norm2"))
                add(b.dResidual.view, into: b.dMiddle.view)
                // middle = residual[l] + attention(norm1(residual[l])) proj
                gemm(b.dMiddle.view, parameters.view("\(p)proj"), into: b.scratch.view, transB: .transposed)
                gemm(b.attention[layer].view, b.dMiddle.view, into: parameters.gradient("\(p)proj"), transA: .transposed, beta: 1)
                attentionBackward(b.scratch.view, qkv: b.qkv[layer].view, heads: config.heads, sequenceLength: t,
                                  probabilities: b.probabilities[layer].view, into: b.dQKV.view)
                gemm(b.dQKV.view, parameters.view("\(p)qkv"), into: b.scratch.view, transB: .transposed)
                gemm(b.norm1[layer].view, b.dQKV.view, into: parameters.gradient("\(p)qkv"), transA: .transposed, beta: 1)
                rmsNormBackward(b.scratch.view, x: b.residual[layer].view, weight: parameters.view("\(p)norm1"),
                                rstd: b.rstd1[layer].view, into: b.dResidual.view, accumulating: parameters.gradient("\(p)norm1"))
                add(b.dMiddle.view, into: b.dResidual.view)
            }
        }
        timeline.record(.dense, thread: 0, "embedding backward") {
            embeddingBackward(tokens: b.inputs, dout: b.dResidual.view, accumulating: parameters.gradient("embedding"))
        }
    }

    /// Seconds the collectives of `syncGradients` cost on the groups' link, modelled
    /// (`CollectiveCost`; 0 on the native link).
    public var syncGradientsCost: Double {
        let (world, data, moe) = (groups.world, groups.data, groups.moe)
        let float = MemoryLayout<Float>.stride
        return world.cost.allReduce(bytes: replicatedCount * float, ranks: world.size)
            + (data.size > 1 ? data.cost.allReduce(bytes: (parameters.count - replicatedCount) * float, ranks: data.size) : 0)
            + moe.cost.allReduce(bytes: MemoryLayout<Double>.stride, ranks: moe.size)
    }

    /// Sums the gradients over the ranks that share each parameter and returns the
    /// global L2 norm of the gradient (its collectives cost `syncGradientsCost`). Collective.
    public func syncGradients() throws -> Double {
        let moving = !ModelledKernels.isTimeOnly
        let replicated = UnsafeMutableBufferPointer(rebasing: parameters.gradients[0..<replicatedCount])
        try groups.world.allReduce(replicated, .sum, moving: moving)
        let sharded = UnsafeMutableBufferPointer(rebasing: parameters.gradients[replicatedCount..<parameters.count])
        if groups.data.size > 1 { try groups.data.allReduce(sharded, .sum, moving: moving) }
        let squares = elementwise("gradient norm", elements: parameters.count, timeOnly: (0.0, 0.0)) {
            (replicated.reduce(0.0) { $0 + Double($1) * Double($1) }, sharded.reduce(0.0) { $0 + Double($1) * Double($1) })
        }
        let (replicatedSquares, shardedSquares) = (squares.0, try groups.moe.allReduce(squares.1, .sum))
        return (replicatedSquares + shardedSquares).squareRoot()
    }
}

/// y += x, element-wise; both [N, C].
func add(_ x: MatrixView, into y: MatrixView) {
    precondition(x.rows == y.rows && x.columns == y.columns, "add needs equal shapes")
    elementwise("add", elements: x.rows * x.columns) {
        for row in 0..<x.rows {
            let (source, target) = (x.base + row * x.rowStride, y.base + row * y.rowStride)
            for j in 0..<x.columns { target[j] += source[j] }
        }
    }
}

/// The forward pass's saved activations and the backward pass's scratch, for
/// n = B/W x T tokens, C channels, L blocks.
final class Activations {
    var inputs: [Int] = [], targets: [Int] = []
    /// residual[l] [n, C]: the stream entering block l (residual[L] leaves the last).
    let residual: [Matrix]
    /// Per block: norm1, attention output and middle (after attention's residual) [n, C],
    /// qkv [n, 3C], probabilities [b NH T, T], norm2 [n, C], rstd1 and rstd2 [1, n].
    let norm1: [Matrix], qkv: [Matrix], attention: [Matrix], probabilities: [Matrix], middle: [Matrix], norm2: [Matrix]
    let rstd1: [Matrix], rstd2: [Matrix]
    let normFinal: Matrix, rstdFinal: Matrix
    /// [n, V]; backward turns it into dlogits in place.
    let logits: Matrix
    let scratch: Matrix, dResidual: Matrix, dMiddle: Matrix, dQKV: Matrix

    init(config: TrainConfig, tokens n: Int, vocabularySize v: Int) {
        let (c, l, t) = (config.modelWidth, config.layers, config.sequenceLength)
        func each(_ rows: Int, _ columns: Int) -> [Matrix] { (0..<l).map { _ in Matrix(rows: rows, columns: columns) } }
        residual = (0...l).map { _ in Matrix(rows: n, columns: c) }
        (norm1, attention, middle, norm2) = (each(n, c), each(n, c), each(n, c), each(n, c))
        qkv = each(n, 3 * c)
        probabilities = each(n / t * config.heads * t, t)
        (rstd1, rstd2) = (each(1, n), each(1, n))
        (normFinal, rstdFinal) = (Matrix(rows: n, columns: c), Matrix(rows: 1, columns: n))
        logits = Matrix(rows: n, columns: v)
        (scratch, dResidual, dMiddle, dQKV) = (Matrix(rows: n, columns: c), Matrix(rows: n, columns: c),
                                               Matrix(rows: n, columns: c), Matrix(rows: n, columns: 3 * c))
    }
}
