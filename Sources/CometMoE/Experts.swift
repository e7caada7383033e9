import CometCore
import CometKernels
import CometMPI

/// The experts one rank holds: two-layer FFNs N -> K -> N, `count` of them,
/// global ids `firstExpert ..< firstExpert + count`; with expert tensor
/// parallelism, shard `shard` of `shards` of each: K / TP of the hidden columns
/// (W1's columns and W2's rows), so GEMM2 and dx give partial sums over shards.
///
/// Every compute step works on a range of rows of `ExpertBuffers` (expert-major,
/// see `RoutingPlan`), so schedules can cut the work into tiles as they like.
public final class Experts: @unchecked Sendable {
    public let activation: Activation
    public let firstExpert: Int
    public let count: Int
    /// Which K-shard of each expert this rank holds, of how many.
    public let shardIndex: Int, shards: Int
    /// W1 [N, width(K / TP)] per local expert (SwiGLU: this shard's gate and up columns), in `parameters`.
    public let up: [MatrixView]
    /// W2 [K / TP, N] per local expert.
    public let down: [MatrixView]
    public let upGradient: [MatrixView]
    public let downGradient: [MatrixView]
    /// The allocation the weights live in.
    public let parameters: ParameterSet
    /// One lock per expert's gradients, so threads may accumulate row tiles at once.
    private let gradientLocks: [Lock]

    /// Tensors of experts `firstExpert ..< firstExpert + count` (K-shards when
    /// `shards` > 1), named under `prefix` by their global ids; each rank holds its own.
    public static func parameterTensors(
        config: MoEConfig, firstExpert: Int, count: Int, shards: Int = 1, prefix: String
    ) -> [ParameterSet.Tensor] {
        let width = config.hiddenWidth / shards
        return (firstExpert..<(firstExpert + count)).flatMap { expert -> [ParameterSet.Tensor] in
            [("\(prefix)\(expert).up", [config.modelWidth, config.activation.width(hidden: width)], true, false),
             ("\(prefix)\(expert).down", [width, config.modelWidth], true, false)]
        }
    }

    /// Experts whose weights live in `parameters` under `prefix` (or in an allocation
    /// of their own), each initialised from the seed and its global id as a whole
    /// expert and then cut to shard `shard` of `shards`, so the same on whichever
    /// rank and in whichever layout it is made.
    public init(
        config: MoEConfig, firstExpert: Int, count: Int, shard: Int = 0, shards: Int = 1,
        parameters: ParameterSet? = nil, prefix: String = "experts."
    ) {
        activation = config.activation
        self.firstExpert = firstExpert
        self.count = count
        (shardIndex, self.shards) = (shard, shards)
        let parameters = parameters
            ?? ParameterSet(Experts.parameterTensors(config: config, firstExpert: firstExpert, count: count, shards: shards, prefix: prefix))
        self.parameters = parameters
        let experts = firstExpert..<(firstExpert + count)
        up = experts.map { parameters.view("\(prefix)\($0).up") }
        down = experts.map { parameters.view("\(prefix)\($0).down") }
        upGradient = experts.map { parameters.gradient("\(prefix)\($0).up") }
        downGradient = experts.map { parameters.gradient("\(prefix)\($0).down") }
        gradientLocks = (0..<count).map { _ in Lock() }
        let (n, k) = (config.modelWidth, config.hiddenWidth)
        for (local, expert) in experts.enumerated() {
            var generator = SeededGenerator(seed: config.seed &+ 0x5EED &* UInt64(expert + 1))
            let (wholeUp, wholeDown) = (Matrix(rows: n, columns: config.activation.width(hidden: k)), Matrix(rows: k, columns: n))
            wholeUp.randomize(scale: 1 / Float(n).squareRoot(), &generator)
            wholeDown.randomize(scale: 1 / Float(k).squareRoot(), &generator)
            withExtendedLifetime((wholeUp, wholeDown)) {
                copyShard(ofUp: wholeUp.view, into: up[local])
                copyShard(ofDown: wholeDown.view, into: down[local])
            }
        }
    }

    /// The columns of a whole expert's W1 [N, width(K)] that shard `shard` of `shards`
    /// holds, in the shard's order: its K / TP hidden columns (SwiGLU: of the gate
    /// half, then of the up half).
    public static func upColumns(hiddenWidth k: Int, activation: Activation, shard: Int, shards: Int) -> [Range<Int>] {
        let width = k / shards, hidden = (shard * width)..<((shard + 1) * width)
        return activation == .swiglu ? [hidden, (k + hidden.lowerBound)..<(k + hidden.upperBound)] : [hidden]
    }

    /// The rows of a whole expert's W2 [K, N] that shard `shard` of `shards` holds.
    public static func downRows(hiddenWidth k: Int, shard: Int, shards: Int) -> Range<Int> {
        (shard * k / shards)..<((shard + 1) * k / shards)
    }

    /// Copies this rank's shard of a whole expert's W1 [N, width(K)] (or of its
    /// gradient) into `target` [N, width(K / TP)] (see `upColumns`).
    public func copyShard(ofUp whole: MatrixView, into target: MatrixView) {
        let k = activation == .swiglu ? whole.columns / 2 : whole.columns, width = k / shards
        let parts = Self.upColumns(hiddenWidth: k, activation: activation, shard: shardIndex, shards: shards)
        for (part, columns) in parts.enumerated() {
            target.columns((part * width)..<((part + 1) * width)).copy(from: whole.columns(columns))
        }
    }

    /// Copies this rank's shard of a whole expert's W2 [K, N] (or of its gradient)
    /// into `target` [K / TP, N].
    public func copyShard(ofDown whole: MatrixView, into target: MatrixView) {
        target.copy(from: whole.rows(Self.downRows(hiddenWidth: whole.rows, shard: shardIndex, shards: shards)))
    }

    // MARK: Forward

    /// Each step returns the FLOPs of its GEMMs.
    ///
    /// GEMM1 and the activation on `rows` of local expert `expert`:
    /// a = x W1 [m, width], h = act(a) [m, K].
    @discardableResult
    public func forwardUp(_ expert: Int, rows: Range<Int>, _ b: ExpertBuffers) -> Double {
        guard !rows.isEmpty else { return 0 }
        gemm(b.x.rows(rows), up[expert], into: b.a.rows(rows))
        activation.forward(b.a.rows(rows), into: b.h.rows(rows))
        return flops(rows.count, b.modelWidth, b.upWidth)
    }

    /// GEMM2 on `rows` of `expert`, output `columns` only: y[:, cols] = h W2[:, cols].
    @discardableResult
    public func forwardDown(_ expert: Int, rows: Range<Int>, columns: Range<Int>, _ b: ExpertBuffers) -> Double {
        guard !rows.isEmpty else { return 0 }
        gemm(b.h.rows(rows), down[expert].columns(columns), into: b.y.rows(rows).columns(columns))
        return flops(rows.count, b.hiddenWidth, columns.count)
    }

    // MARK: Backward

    /// dh = dy W2ᵀ [m, K], da = dh * act'(a) [m, width] on `rows` of `expert`.
    @discardableResult
    public func backwardDown(_ expert: Int, rows: Range<Int>, _ b: ExpertBuffers) -> Double {
        guard !rows.isEmpty else { return 0 }
        gemm(b.dy.rows(rows), down[expert], into: b.dh.rows(rows), transB: .transposed)
        activation.backward(b.a.rows(rows), b.dh.rows(rows), into: b.da.rows(rows))
        return flops(rows.count, b.modelWidth, b.hiddenWidth)
    }

    /// dx[:, cols] = da W1[cols, :]ᵀ on `rows` of `expert`.
    @discardableResult
    public func backwardUp(_ expert: Int, rows: Range<Int>, columns: Range<Int>, _ b: ExpertBuffers) -> Double {
        guard !rows.isEmpty else { return 0 }
        gemm(b.da.rows(rows), up[expert].rows(columns), into: b.dx.rows(rows).columns(columns), transB: .transposed)
        return flops(rows.count, b.upWidth, columns.count)
    }

    /// dW2 += hᵀ dy over `rows` of `expert`.
    @discardableResult
    public func accumulateDownGradient(_ expert: Int, rows: Range<Int>, _ b: ExpertBuffers) -> Double {
        guard !rows.isEmpty else { return 0 }
        gradientLocks[expert].withLock {
            gemm(b.h.rows(rows), b.dy.rows(rows), into: downGradient[expert], transA: .transposed, beta: 1)
        }
        return flops(b.hiddenWidth, rows.count, b.modelWidth)
    }

    /// dW1 += xᵀ da over `rows` of `expert`.
    @discardableResult
    public func accumulateUpGradient(_ expert: Int, rows: Range<Int>, _ b: ExpertBuffers) -> Double {
        guard !rows.isEmpty else { return 0 }
        gradientLocks[expert].withLock {
            gemm(b.x.rows(rows), b.da.rows(rows), into: upGradient[expert], transA: .transposed, beta: 1)
        }
        return flops(b.modelWidth, rows.count, b.upWidth)
    }
}

/// FLOPs of a GEMM [m, k] x [k, n].
func flops(_ m: Int, _ k: Int, _ n: Int) -> Double { 2 * Double(m) * Double(k) * Double(n) }

/// The expert side's row buffers, expert-major (see `RoutingPlan`), grown as needed.
public final class ExpertBuffers: @unchecked Sendable {
    public let modelWidth: Int, hiddenWidth: Int, upWidth: Int
    public private(set) var capacity = 0
    /// Received rows [R, N] and the forward activations kept for backward.
    public private(set) var x: MatrixView, a: MatrixView, h: MatrixView, y: MatrixView
    /// Backward: dy [R, N] received, dh [R, K], da [R, width], dx [R, N] sent back.
    public private(set) var dy: MatrixView, dh: MatrixView, da: MatrixView, dx: MatrixView
    private var storage: [Matrix] = []

    public init(modelWidth: Int, hiddenWidth: Int, activation: Activation) {
        self.modelWidth = modelWidth
        self.hiddenWidth = hiddenWidth
        upWidth = activation.width(hidden: hiddenWidth)
        let empty = Matrix(rows: 0, columns: 1).view
        (x, a, h, y, dy, dh, da, dx) = (empty, empty, empty, empty, empty, empty, empty, empty)
        reserve(rows: 1)
    }

    /// Makes room for `rows` rows; contents are kept only when no growth is needed.
    /// Growth at least doubles: routing drifts while a model trains, and every new
    /// allocation costs page faults on first touch. That cost is the host's, not the
    /// emulated device's (a GPU framework's caching allocator hands back memory it
    /// already holds), so device time does not charge it: under load the zeroing and
    /// page faults of one growth took up to 51 ms of CPU, which the rank's peers then
    /// waited for in their next exchange.
    public func reserve(rows: Int) {
        guard rows > capacity else { return }
        capacity = max(rows, capacity * 2)
        let widths = [modelWidth, upWidth, hiddenWidth, modelWidth, modelWidth, hiddenWidth, upWidth, modelWidth]
        chargeAsWaiting { storage = widths.map { Matrix(rows: capacity, columns: $0) } }
        (x, a, h, y) = (storage[0].view, storage[1].view, storage[2].view, storage[3].view)
        (dy, dh, da, dx) = (storage[4].view, storage[5].view, storage[6].view, storage[7].view)
    }
}
