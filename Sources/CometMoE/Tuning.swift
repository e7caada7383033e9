import CometCore
import CometKernels
import Foundation

/// Comet's second idea, adaptive workload assignment, on CPU ranks: how many of a
/// rank's threads communicate and how many run GEMMs, and how finely the shared
/// tensor is cut (layer0 row tiles, layer1 column blocks), chosen per layer shape,
/// layout and link from measured profiles (`comet-bench tune` writes a
/// `TuningTable`), or from a cost model where the table has no entry.
public struct WorkloadSplit: Codable, Hashable, Sendable, CustomStringConvertible {
    public var commThreads: Int
    public var gemmThreads: Int
    public var tileRows: Int
    public var blockColumns: Int

    public init(commThreads: Int, gemmThreads: Int, tileRows: Int, blockColumns: Int) {
        (self.commThreads, self.gemmThreads, self.tileRows, self.blockColumns) = (commThreads, gemmThreads, tileRows, blockColumns)
    }

    /// What comet uses when nothing is tuned: one thread of each, 64-row tiles, 256-column blocks.
    public static let fixedDefault = WorkloadSplit(commThreads: 1, gemmThreads: 1, tileRows: ScheduleOptions.emulatedTileRows,
                                                   blockColumns: ScheduleOptions.emulatedBlockColumns)

    /// The candidates `comet-bench tune` profiles: thread splits within `threads`
    /// threads per rank, tiles of 32 to 256 rows, blocks of 64 to 256 columns.
    public static func candidates(threads: Int) -> [WorkloadSplit] {
        let budget = max(2, threads)
        let splits = (1..<budget).flatMap { comm in (1...(budget - comm)).map { (comm, $0) } }
        return splits.flatMap { comm, gemm in
            [32, 64, 128, 256].flatMap { rows in
                [64, 128, 256].map { WorkloadSplit(commThreads: comm, gemmThreads: gemm, tileRows: rows, blockColumns: $0) }
            }
        }
    }

    /// `options` with this split's threads, tiles and blocks.
    public func applied(to options: ScheduleOptions) -> ScheduleOptions {
        var options = options
        (options.commThreads, options.gemmThreads) = (commThreads, gemmThreads)
        (options.tileRows, options.blockColumns) = (tileRows, blockColumns)
        return options
    }

    public var description: String {
        "\(commThreads) communicator + \(gemmThreads) GEMM threads, \(tileRows)-row tiles, \(blockColumns)-column blocks"
    }
}

/// What a tuning table is keyed by: the layer's shape, the layout, the link and the machine.
public struct TuningKey: Codable, Hashable, Sendable, CustomStringConvertible {
    /// Host name, cores and BLAS kernel (`TuningKey.thisMachine`).
    public var machine: String
    /// The link model's name (native, balanced, balanced-pass, h800, l20, ...).
    public var link: String
    public var ranks: Int
    public var expertParallel: Int
    public var tensorParallel: Int
    public var tokensPerRank: Int
    public var modelWidth: Int
    public var hiddenWidth: Int
    public var experts: Int
    public var topK: Int
    public var activation: Activation

    public init(config: MoEConfig, ranks: Int, tensorParallel: Int, link: String, machine: String) {
        (self.machine, self.link, self.ranks) = (machine, link, ranks)
        (expertParallel, self.tensorParallel) = (ranks / tensorParallel, tensorParallel)
        (tokensPerRank, modelWidth, hiddenWidth) = (config.tokensPerRank, config.modelWidth, config.hiddenWidth)
        (experts, topK, activation) = (config.experts, config.topK, config.activation)
    }

    /// "host/2 cores/Cooperlake": the machine a measurement holds for.
    public static func thisMachine(blasCore: String) -> String {
        "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.activeProcessorCount) cores/\(blasCore)"
    }

    public var description: String {
        "T=\(tokensPerRank) N=\(modelWidth) K=\(hiddenWidth) E=\(experts) top-k=\(topK) \(activation.rawValue), "
            + "\(ranks) ranks (EP=\(expertParallel) x TP=\(tensorParallel)), link \(link), machine \(machine)"
    }
}

/// One profiled configuration: every candidate's median time and the best.
public struct TuningEntry: Codable, Sendable {
    public struct Measurement: Codable, Sendable {
        public let split: WorkloadSplit
        /// Median forward + backward, ms.
        public let milliseconds: Double

        public init(split: WorkloadSplit, milliseconds: Double) { (self.split, self.milliseconds) = (split, milliseconds) }
    }

    public let key: TuningKey
    public let best: WorkloadSplit
    public let measurements: [Measurement]

    public init(key: TuningKey, measurements: [Measurement]) {
        self.key = key
        self.measurements = measurements
        best = measurements.min { $0.milliseconds < $1.milliseconds }?.split ?? .fixedDefault
    }

    public func milliseconds(_ split: WorkloadSplit) -> Double? { measurements.first { $0.split == split }?.milliseconds }
}

/// The profiles `comet-bench tune` measured, as a JSON file: `{"entries": [...]}`.
public struct TuningTable: Codable, Sendable {
    public private(set) var entries: [TuningEntry] = []

    public init() {}

    /// Reads `path`; an absent file is an empty table, an unreadable, unparsable or
    /// malformed one an error of one line.
    public static func load(_ path: String) throws -> TuningTable {
        guard FileManager.default.fileExists(atPath: path) else { return TuningTable() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("cannot read the tuning table \(path): it is not a readable file")
        }
        do {
            _ = try JSONText.parse(data)  // JSONDecoder's own syntax errors do not say where
            return try JSONDecoder().decode(TuningTable.self, from: data)
        } catch let error as InputError {
            throw InputError("the tuning table \(path) does not parse as JSON: \(error)")
        } catch let error as DecodingError {
            throw InputError("the tuning table \(path) is not one comet-bench tune wrote: \(JSONText.describe(error))")
        }
    }

    public func entry(for key: TuningKey) -> TuningEntry? { entries.first { $0.key == key } }

    /// Adds `entry`, replacing one with the same key.
    public mutating func record(_ entry: TuningEntry) {
        entries.removeAll { $0.key == entry.key }
        entries.append(entry)
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

/// Chooses comet's `WorkloadSplit` for a layer call: the tuning table's best where
/// it has the key, else the cost model's.
public enum AdaptiveAssignment {
    /// The split, and why it was chosen (one line, for the log).
    /// `gemmGFLOPs(m, n, k)`: single-thread GFLOP/s of a GEMM [m, k] x [k, n] on this machine.
    public static func choose(
        _ key: TuningKey, table: TuningTable?, link: LinkModel, cores: Int, ranksPerNode: Int,
        gemmGFLOPs: @escaping (_ m: Int, _ n: Int, _ k: Int) -> Double
    ) -> (split: WorkloadSplit, reason: String) {
        if let entry = table?.entry(for: key) {
            let best = entry.milliseconds(entry.best).map { String(format: "%.1f ms", $0) } ?? "?"
            let fixed = entry.milliseconds(.fixedDefault).map { String(format: ", the fixed default %.1f ms", $0) } ?? ""
            return (entry.best, "measured: the tuning table's best of \(entry.measurements.count) candidates (\(best)\(fixed))")
        }
        let model = CostModel(key: key, link: link, cores: cores, ranksPerNode: ranksPerNode, gemmGFLOPs: gemmGFLOPs)
        let candidates = WorkloadSplit.candidates(threads: model.threadsPerRank)
        let best = candidates.min { model.seconds($0) < model.seconds($1) } ?? .fixedDefault
        return (best, String(format: "cost model (no tuning-table entry for this shape, layout, link and machine): "
                                + "predicts %.1f ms against %.1f ms for the fixed default",
                             1e3 * model.seconds(best), 1e3 * model.seconds(.fixedDefault)))
    }
}

/// A first-order model of one comet forward + backward on one rank, for shapes
/// the tuning table lacks. R = T k TP rows arrive per rank, evenly from W ranks.
///
/// - Link: D = C = latency + (R / W) N 4 bytes / bandwidth per exchange (all rank
///   pairs at once).
/// - GEMMs: FLOPs over the single-thread rate measured at the GEMM's shape
///   (`gemmGFLOPs(m, n, k)`, which captures how thin tiles lose efficiency), spread
///   over the GEMM threads but never over more than the rank's share of cores.
/// - layer0 = max(D, GEMM1) + the first tile's transfer (the pipeline fills) + the
///   GEMM of the last tiles to land (it drains). layer1 = max(C, GEMM2) + the first
///   block's GEMM + the last block's transfer. Backward: the same halves with the
///   dgrad and wgrad GEMMs.
/// - Every tile and block wakes a communicator thread; on oversubscribed cores a
///   wake-up waits for a core. The model assumes 0.25 ms per rank beyond the first
///   on a core (0.75 ms at 4 ranks per core; traces showed up to 10 ms at worst),
///   shared by the communicator threads. This constant is a guess, not a fit.
struct CostModel {
    let key: TuningKey
    let link: LinkModel
    let cores: Int
    let ranksPerNode: Int
    let gemmGFLOPs: (_ m: Int, _ n: Int, _ k: Int) -> Double

    /// Threads a rank may use: its share of the cores, at least 2 (one of each kind).
    var threadsPerRank: Int { max(2, cores / max(1, ranksPerNode)) }

    func seconds(_ split: WorkloadSplit) -> Double {
        let (w, tp) = (key.ranks, key.tensorParallel)
        let rows = key.tokensPerRank * key.topK * tp, n = key.modelWidth, k = key.hiddenWidth / tp
        let upWidth = key.activation == .swiglu ? 2 * k : k
        let load = Double(ranksPerNode) / Double(cores)  // runnable ranks per core
        /// Wall seconds of `count` GEMMs [m, kk] x [kk, nn] on this rank's GEMM threads.
        func gemm(_ m: Int, _ nn: Int, _ kk: Int, count: Double = 1) -> Double {
            guard m > 0 else { return 0 }
            let cpu = count * 2 * Double(m) * Double(nn) * Double(kk) / (gemmGFLOPs(m, nn, kk) * 1e9)
            return cpu * max(1 / Double(split.gemmThreads), load)
        }
        func transfer(rows: Int, columns: Int) -> Double {
            link.isNative || rows == 0 ? 0 : link.latency + Double(rows * columns * 4) / link.bandwidth
        }
        let perPeer = max(1, rows / w), tile = min(split.tileRows, perPeer)
        let exchange = transfer(rows: perPeer, columns: n)
        let tiles = Double(w) * Double((perPeer + tile - 1) / tile)
        let blocks = Double((n + split.blockColumns - 1) / split.blockColumns)
        let first = max(1, split.blockColumns / 4)  // blocks ramp up from a quarter (`rampedTiles`)
        let wakeUps = (tiles + blocks) * 1e-3 * max(0, load - 1) / 4 / Double(split.commThreads)
        // Layer0 GEMMs run on up to `tilesPerGEMM` landed tiles at once.
        let merged = min(rows, ScheduleOptions.tilesPerGEMM * tile)
        let up = gemm(merged, upWidth, n, count: Double(rows) / Double(merged))
        let down = gemm(rows, split.blockColumns, k, count: Double(n) / Double(split.blockColumns))
        let forward = max(exchange, up) + transfer(rows: tile, columns: n) + gemm(tile, upWidth, n)
            + max(exchange, down) + gemm(rows, first, k) + transfer(rows: perPeer, columns: first)
        let dgradDown = gemm(merged, k, n, count: Double(rows) / Double(merged))
        let backward = max(exchange, 2 * dgradDown) + transfer(rows: tile, columns: n) + 2 * gemm(tile, k, n)
            + max(exchange, 2 * gemm(rows, split.blockColumns, upWidth, count: Double(n) / Double(split.blockColumns)))
            + gemm(rows, first, upWidth) + transfer(rows: perPeer, columns: first)
        return forward + backward + 2 * wakeUps
    }
}
