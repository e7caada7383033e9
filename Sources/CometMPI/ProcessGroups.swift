/// How W ranks are arranged: W = EP x TP x DP.
///
/// Ranks are numbered with TP fastest, then EP, then DP, so that a tensor-parallel
/// group is a run of consecutive ranks (one node, as NVLink islands are on GPUs):
/// `rank = tp + TP * (ep + EP * dp)`.
public struct ParallelLayout: Equatable, Sendable, CustomStringConvertible {
    /// Ranks that share out the experts.
    public let expertParallel: Int
    /// Ranks that share out each expert's K dimension.
    public let tensorParallel: Int
    /// Replicas of the expert-parallel x tensor-parallel grid.
    public let dataParallel: Int

    public var worldSize: Int { expertParallel * tensorParallel * dataParallel }

    public init(expertParallel: Int, tensorParallel: Int = 1, dataParallel: Int = 1) throws {
        for (name, value) in [("EP", expertParallel), ("TP", tensorParallel), ("DP", dataParallel)] where value < 1 {
            throw LayoutError.nonPositive(name: name, value: value)
        }
        self.expertParallel = expertParallel
        self.tensorParallel = tensorParallel
        self.dataParallel = dataParallel
    }

    /// The layout for `worldSize` ranks with the sizes given; a missing size takes
    /// what is left (EP first, then DP), and the result must use every rank.
    public static func resolve(worldSize: Int, ep: Int?, tp: Int?, dp: Int?) throws -> ParallelLayout {
        for (name, value) in [("EP", ep), ("TP", tp), ("DP", dp)] {
            if let value, value < 1 { throw LayoutError.nonPositive(name: name, value: value) }
        }
        let given = [("EP", ep), ("TP", tp), ("DP", dp)].compactMap { name, value in value.map { (name, $0) } }
        let product = given.reduce(1) { $0 * $1.1 }
        if given.count < 3, worldSize % product != 0 {
            let sizes = given.map { "\($0.0)=\($0.1)" }.joined(separator: " x ")
            throw LayoutError.doesNotDivide(sizes: sizes, product: product, worldSize: worldSize)
        }
        let tp = tp ?? 1
        let ep = ep ?? worldSize / (tp * (dp ?? 1))
        let layout = try ParallelLayout(expertParallel: ep, tensorParallel: tp, dataParallel: dp ?? worldSize / (ep * tp))
        guard layout.worldSize == worldSize else { throw LayoutError.worldMismatch(layout: layout, worldSize: worldSize) }
        return layout
    }

    /// Every layout of `worldSize` ranks.
    public static func all(worldSize: Int) -> [ParallelLayout] {
        var layouts: [ParallelLayout] = []
        for ep in 1...worldSize where worldSize % ep == 0 {
            for tp in 1...(worldSize / ep) where (worldSize / ep) % tp == 0 {
                layouts.append(try! ParallelLayout(expertParallel: ep, tensorParallel: tp, dataParallel: worldSize / ep / tp))
            }
        }
        return layouts
    }

    /// Position of `rank` in the grid.
    public func coordinates(of rank: Int) -> (ep: Int, tp: Int, dp: Int) {
        (ep: (rank / tensorParallel) % expertParallel, tp: rank % tensorParallel,
         dp: rank / (tensorParallel * expertParallel))
    }

    public func rank(ep: Int, tp: Int, dp: Int) -> Int {
        tp + tensorParallel * (ep + expertParallel * dp)
    }

    public var description: String { "EP=\(expertParallel) x TP=\(tensorParallel) x DP=\(dataParallel)" }
}

/// A layout that cannot be used.
public enum LayoutError: Error, CustomStringConvertible, Equatable {
    case nonPositive(name: String, value: Int)
    case worldMismatch(layout: ParallelLayout, worldSize: Int)
    case doesNotDivide(sizes: String, product: Int, worldSize: Int)

    public var description: String {
        switch self {
        case .nonPositive(let name, let value):
            "\(name) must be at least 1, got \(value)"
        case .worldMismatch(let layout, let worldSize):
            "layout \(layout) needs \(layout.worldSize) ranks, but the job has \(worldSize): "
                + "start it with mpirun -n \(layout.worldSize), or choose sizes whose product is \(worldSize)"
        case .doesNotDivide(let sizes, let product, let worldSize):
            "\(sizes) cannot fill the job's \(worldSize) ranks: EP x TP x DP must equal the number of ranks, "
                + "and \(product) does not divide \(worldSize)"
        }
    }
}

/// The communicators of one layout, as picotron's process-group manager keeps them.
public struct ProcessGroups: Sendable {
    public let layout: ParallelLayout
    /// All ranks; dense layers (attention, norms, embeddings) are data parallel over it.
    public let world: Communicator
    /// Ranks with the same TP and DP coordinates: the experts are sharded over them.
    public let expert: Communicator
    /// Ranks with the same EP and DP coordinates: one expert's K dimension is sharded over them.
    public let tensor: Communicator
    /// Ranks with the same EP and TP coordinates: replicas of the same expert shard.
    public let data: Communicator
    /// Ranks with the same DP coordinate: the EP x TP ranks one MoE layer runs on,
    /// numbered tp + TP ep (as `RoutingPlan` expects).
    public let moe: Communicator

    /// Splits `world` for `layout`. Collective; throws `LayoutError.worldMismatch` on every
    /// rank alike when the sizes do not fit.
    public init(world: Communicator, layout: ParallelLayout) throws {
        guard layout.worldSize == world.size else {
            throw LayoutError.worldMismatch(layout: layout, worldSize: world.size)
        }
        let at = layout.coordinates(of: world.rank)
        self.layout = layout
        self.world = world
        self.expert = try world.split(color: at.tp + layout.tensorParallel * at.dp, key: at.ep)
        self.tensor = try world.split(color: at.ep + layout.expertParallel * at.dp, key: at.tp)
        self.data = try world.split(color: at.tp + layout.tensorParallel * at.ep, key: at.dp)
        self.moe = try world.split(color: at.dp, key: at.tp + layout.tensorParallel * at.ep)
    }

    /// The same groups, whose collectives' data costs `cost` on the emulated link
    /// (`Communicator.withCost`).
    public func withCost(_ cost: CollectiveCost) -> ProcessGroups {
        ProcessGroups(layout: layout, world: world.withCost(cost), expert: expert.withCost(cost),
                      tensor: tensor.withCost(cost), data: data.withCost(cost), moe: moe.withCost(cost))
    }

    private init(layout: ParallelLayout, world: Communicator, expert: Communicator, tensor: Communicator,
                 data: Communicator, moe: Communicator) {
        (self.layout, self.world, self.expert, self.tensor, self.data, self.moe) = (layout, world, expert, tensor, data, moe)
    }
}
