import CometCore
import CometKernels
import CometMPI

/// Everything a schedule needs for one layer call; the same for every schedule.
/// (What stays from call to call, the link and the device, it is given at construction.)
public struct LayerCall: @unchecked Sendable {
    public let plan: RoutingPlan
    public let routing: Routing
    public let experts: Experts
    /// The expert-parallel group: the ranks that rows move between.
    public let group: Communicator
    public let timeline: Timeline
}

/// How rows move between ranks and when the expert GEMMs run: the part of the
/// layer that the schedules differ in (Megatron's token dispatcher plus
/// the experts' loop). Schedules are swappable behind this interface.
public protocol MoESchedule: AnyObject {
    /// "sequential", "chunked", "comet" or "comet-rows".
    var name: String { get }

    /// How it cuts the layer's work, as chosen at construction (for reports).
    var tiling: ScheduleTiling { get }

    /// How it divides the rank's engines, as chosen at construction (for reports).
    var engines: EngineSplit { get }

    /// y [T, N] = sum_j w_tj FFN_e(t,j)(x_t) for x [T, N]; keeps what `backward` needs.
    func forward(_ x: MatrixView, _ call: LayerCall, into y: MatrixView) throws

    /// dx [T, N] through the experts (overwritten) for dy [T, N], after `forward`
    /// with the same call; accumulates the experts' weight gradients and returns
    /// dL/dw [T, k] for the router.
    func backward(_ dy: MatrixView, _ call: LayerCall, into dx: MatrixView) throws -> [Float]

    /// Gives back what the schedule holds on every rank (comet's window); the
    /// schedule is unusable afterwards. Collective.
    func release() throws
}

/// How a schedule cuts a layer call's work: what it chose from its options and
/// its link at construction.
public struct ScheduleTiling: Sendable, Codable, Equatable, CustomStringConvertible {
    /// Comet's layer0 transfer tiles, rows (nil: the schedule moves whole exchanges).
    public var tileRows: Int?
    /// Comet's layer1 column blocks (nil: not cut by columns).
    public var columnBlocks: [Range<Int>]?
    /// The chunked schedule's chunks.
    public var chunks: Int?
    /// Comet's communication SMs on a modelled GPU.
    public var commSMs: Int?

    public init(tileRows: Int? = nil, columnBlocks: [Range<Int>]? = nil, chunks: Int? = nil, commSMs: Int? = nil) {
        (self.tileRows, self.columnBlocks, self.chunks, self.commSMs) = (tileRows, columnBlocks, chunks, commSMs)
    }

    public var description: String {
        var parts: [String] = []
        if let tileRows { parts.append(tileRows >= ScheduleOptions.wholeSegments ? "whole-segment tiles" : "\(tileRows)-row tiles") }
        if let columnBlocks { parts.append("column blocks " + columnBlocks.map { "\($0.count)" }.joined(separator: "+")) }
        if let chunks { parts.append("\(chunks) chunks") }
        if let commSMs { parts.append("\(commSMs) communication SMs") }
        return parts.isEmpty ? "whole exchanges" : parts.joined(separator: ", ")
    }
}

/// How a schedule divides a rank's engines (its threads; on device time the emulated
/// device's cores): communicators and GEMM engines.
public struct EngineSplit: Sendable, Codable, Equatable, CustomStringConvertible {
    public let communicators: Int
    public let gemm: Int

    public init(communicators: Int, gemm: Int) { (self.communicators, self.gemm) = (communicators, gemm) }

    /// The engines per rank the split divides.
    public var total: Int { communicators + gemm }

    /// "1 communicator + 1 GEMM".
    public var description: String { "\(communicators) communicator + \(gemm) GEMM" }

    /// "engines per rank: 2 (1 communicator + 1 GEMM)", or, where schedules divide the
    /// budget differently, each split with the schedules that use it:
    /// "engines per rank: 3 (sequential, chunked: 1 communicator + 2 GEMM; comet: 2 communicator + 1 GEMM)".
    public static func reportLine(_ schedules: [(String, EngineSplit)]) -> String {
        var splits: [(engines: EngineSplit, names: [String])] = []
        for (name, engines) in schedules {
            if let index = splits.firstIndex(where: { $0.engines == engines }) {
                splits[index].names.append(name)
            } else {
                splits.append((engines, [name]))
            }
        }
        let budget = splits.first.map { "\($0.engines.total)" } ?? "?"
        let parts = splits.count == 1 ? ["\(splits[0].engines)"]
            : splits.map { "\($0.names.joined(separator: ", ")): \($0.engines)" }
        return "engines per rank: \(budget) (\(parts.joined(separator: "; ")))"
    }
}

/// Engines and tile sizes of a schedule.
///
/// A rank has a fixed budget of engines, `coresPerRank`, and a schedule divides it:
/// comet into `commThreads` communicators and the rest GEMM engines (or `gemmThreads`
/// GEMM engines and the rest communicators); sequential (its main thread runs the
/// all-to-alls) and chunked (one communicator thread) into one communicator and the
/// rest GEMM engines. One more communicator is one GEMM engine less.
public struct ScheduleOptions: Sendable, Codable, Equatable {
    /// Engines per rank: what the schedule's communicators and GEMM engines divide (at least 2).
    public var coresPerRank = 2
    /// Comet's communicator engines; nil: what `gemmThreads` leaves of the budget, or 1.
    public var commThreads: Int?
    /// Comet's GEMM engines; nil: what the communicators leave of the budget.
    public var gemmThreads: Int?
    /// Rows per layer0 transfer tile (comet); nil: chosen by the link (`tileRows(for:kind:)`).
    public var tileRows: Int?
    /// Columns per layer1 column block (comet); nil: chosen by the link.
    public var blockColumns: Int?
    /// Chunks the chunked schedule pipelines.
    public var chunks = 4
    /// SMs comet's communication thread blocks hold on a modelled GPU (the paper's
    /// adaptive workload assignment): its pulls and pushes move at what they copy, its
    /// GEMMs run on the SMs left. nil: the GPU's default (`LinkModel.CopyRates`).
    public var commSMs: Int?

    public init() {}

    /// The thread blocks that move a `kind` schedule's rows on `link`: comet's
    /// communication SMs on a GPU's link, nil for the others and on other links.
    /// Throws when they leave a GPU no SM or are set where there is no GPU.
    public func copyBlocks(for kind: ScheduleKind, on link: LinkModel) throws -> Int? {
        guard kind == .comet || kind == .cometRows else { return nil }
        guard let rates = link.copyRates else {
            if commSMs != nil { throw InputError("--comm-sms divides a modelled GPU's SMs: choose one with --device h200|h800|l20") }
            return nil
        }
        let blocks = commSMs ?? rates.defaultBlocks
        guard (1..<rates.sms).contains(blocks) else {
            throw InputError("comet's communication SMs (--comm-sms) must leave the GEMMs some of the GPU's \(rates.sms): 1 to "
                + "\(rates.sms - 1), got \(blocks)")
        }
        return blocks
    }

    /// Writes every key, nil as null, so that a configuration file shows them all.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(coresPerRank, forKey: .coresPerRank)
        try container.encode(commThreads, forKey: .commThreads)
        try container.encode(gemmThreads, forKey: .gemmThreads)
        try container.encode(tileRows, forKey: .tileRows)
        try container.encode(blockColumns, forKey: .blockColumns)
        try container.encode(chunks, forKey: .chunks)
        try container.encode(commSMs, forKey: .commSMs)
    }

    /// How a schedule of `kind` divides the `coresPerRank` engines (valid once `validate` passed).
    public func engines(for kind: ScheduleKind) -> EngineSplit {
        let communicators = switch kind {
        case .comet, .cometRows: commThreads ?? gemmThreads.map { coresPerRank - $0 } ?? 1
        case .sequential, .chunked: 1
        }
        return EngineSplit(communicators: communicators, gemm: coresPerRank - communicators)
    }

    /// Tile rows that cover any segment.
    public static let wholeSegments = 1 << 20
    /// Landed layer0 tiles one GEMM may take at once (comet), and what the cost model assumes.
    public static let tilesPerGEMM = 8
    /// Tile rows when the link chooses them on an emulated link, by schedule. comet:
    /// 32, so that rows land often enough to keep its GEMM engine busy through layer0
    /// (with 64-row tiles it waited 3.6 ms for the third round of tiles at the default
    /// shape on `balanced`). comet-rows: 64, whose GEMM2s and pushes follow each
    /// landed group, so that finer tiles cost it more than they save (32: 74.2 ms
    /// forward against 70.9).
    static func emulatedTileRows(for kind: ScheduleKind) -> Int { kind == .comet ? 32 : 64 }
    /// Block columns when the link chooses them on an emulated link. Narrower
    /// blocks cost CPU: every block's GEMM repacks all of the expert's rows, so
    /// 256 measured 3% to 7% faster than 128 at the default shape (the tuner's
    /// choice at every layout).
    static let emulatedBlockColumns = 256

    /// Layer0's transfer tile rows for a schedule of `kind` on `link`: those set, or
    /// else `emulatedTileRows(for:)`, or whole segments on a native link, where there
    /// is nothing to hide (the fewest, most efficient GEMMs).
    public func tileRows(for link: LinkModel, kind: ScheduleKind) -> Int {
        tileRows ?? (link.isNative ? Self.wholeSegments : Self.emulatedTileRows(for: kind))
    }

    /// Layer1's column blocks of `0..<modelWidth` on `link`: blocks of the size set
    /// (or 256), the first and last ones a quarter of it (`rampedTiles`), so that
    /// the first push starts soon after layer0 and the last one is short; one block
    /// on a native link when none is set.
    public func columnBlocks(for link: LinkModel, modelWidth: Int) -> [Range<Int>] {
        if blockColumns == nil, link.isNative { return [0..<modelWidth] }
        let size = blockColumns ?? Self.emulatedBlockColumns
        return rampedTiles(0..<modelWidth, first: size / 4, size: size)
    }

    /// Engines per rank at most: a device's workers (`DeviceClock.maxEngines` less the main thread).
    public static let maxCoresPerRank = DeviceClock.maxEngines - 1

    /// Checks the budget, comet's split of it, the tiles and the chunks; each
    /// problem is one line.
    public func validate() throws {
        guard (2...Self.maxCoresPerRank).contains(coresPerRank) else {
            throw InputError("engines per rank (--cores-per-rank) must be 2 to \(Self.maxCoresPerRank), one communicator "
                + "and one GEMM engine at least; got \(coresPerRank)")
        }
        if let commThreads, let gemmThreads, commThreads + gemmThreads != coresPerRank {
            throw InputError("comet's \(commThreads) communicator + \(gemmThreads) GEMM engines are not the \(coresPerRank) engines "
                + "per rank (--cores-per-rank): give one of the two, the other is the rest")
        }
        let comet = engines(for: .comet)
        guard comet.communicators >= 1, comet.gemm >= 1 else {
            throw InputError("comet needs at least one communicator and one GEMM engine of the \(coresPerRank) engines per rank; "
                + "got \(comet.communicators) communicator + \(comet.gemm) GEMM")
        }
        for (name, value) in [("tile rows", tileRows ?? 1), ("block columns", blockColumns ?? 1), ("chunks", chunks)] where value < 1 {
            throw InputError("\(name) must be at least 1, got \(value)")
        }
    }
}
