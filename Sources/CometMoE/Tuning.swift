import CometCore
import CometKernels
import Foundation

/// Comet's second idea, adaptive workload assignment, on CPU ranks: how a rank's
/// fixed budget of engines (`ScheduleOptions.coresPerRank`) divides into
/// communicators and GEMM engines, and how finely the shared tensor is cut (layer0
/// row tiles, layer1 column blocks), chosen per layer shape, layout, link, clock and
/// budget from measured profiles (`comet-bench tune` writes a `TuningTable`), or
/// from a cost model where the table has no entry.
public struct WorkloadSplit: Codable, Hashable, Sendable, CustomStringConvertible {
    public var commThreads: Int
    public var gemmThreads: Int
    public var tileRows: Int
    public var blockColumns: Int
    /// Communication SMs on a modelled GPU (`ScheduleOptions.commSMs`); nil elsewhere,
    /// and in tables written before GPUs.
    public var commSMs: Int?

    public init(commThreads: Int, gemmThreads: Int, tileRows: Int, blockColumns: Int, commSMs: Int? = nil) {
        (self.commThreads, self.gemmThreads, self.tileRows, self.blockColumns) = (commThreads, gemmThreads, tileRows, blockColumns)
        self.commSMs = commSMs
    }

    /// What comet uses when nothing is tuned on an emulated link: one communicator and
    /// the rest of the `coresPerRank` engines GEMM engines, 32-row tiles, 256-column
    /// blocks, and on a GPU `commSMs` communication SMs.
    public static func fixedDefault(coresPerRank: Int, commSMs: Int? = nil) -> WorkloadSplit {
        WorkloadSplit(commThreads: 1, gemmThreads: coresPerRank - 1, tileRows: ScheduleOptions.emulatedTileRows(for: .comet),
                      blockColumns: ScheduleOptions.emulatedBlockColumns, commSMs: commSMs)
    }

    /// Communication SMs `comet-bench tune` tries on a modelled GPU.
    public static let smCandidates = [8, 16, 24, 32, 48]

    /// The candidates `comet-bench tune` profiles: every split of the `coresPerRank`
    /// engines (C communicators and the other coresPerRank - C GEMM engines, C = 1 ...
    /// coresPerRank - 1) with tiles of 32 to 256 rows and blocks of 64 to 256 columns;
    /// on a modelled GPU (`onGPU`) with tiles of 32 and 64 rows, blocks of 128 and 256
    /// columns (a GPU's tiles cost their share of one kernel, so their size matters
    /// less) and each of `smCandidates` communication SMs.
    public static func candidates(coresPerRank: Int, onGPU: Bool = false) -> [WorkloadSplit] {
        precondition(coresPerRank >= 2, "a rank needs a communicator and a GEMM engine")
        let (tiles, blocks, sms): ([Int], [Int], [Int?]) = onGPU ? ([32, 64], [128, 256], smCandidates) : ([32, 64, 128, 256], [64, 128, 256], [nil])
        return (1..<coresPerRank).flatMap { comm in
            sms.flatMap { sm in
                tiles.flatMap { rows in
                    blocks.map {
                        WorkloadSplit(commThreads: comm, gemmThreads: coresPerRank - comm, tileRows: rows, blockColumns: $0, commSMs: sm)
                    }
                }
            }
        }
    }

    /// The engines per rank this split divides.
    public var coresPerRank: Int { commThreads + gemmThreads }

    /// `options` with this split's engines, tiles, blocks and communication SMs (its
    /// engines must be the options' `coresPerRank`, which `ScheduleOptions.validate` checks).
    public func applied(to options: ScheduleOptions) -> ScheduleOptions {
        var options = options
        (options.commThreads, options.gemmThreads) = (commThreads, gemmThreads)
        (options.tileRows, options.blockColumns) = (tileRows, blockColumns)
        if let commSMs { options.commSMs = commSMs }
        return options
    }

    public var description: String {
        "\(commThreads) communicator + \(gemmThreads) GEMM engines, \(tileRows)-row tiles, \(blockColumns)-column blocks"
            + (commSMs.map { ", \($0) communication SMs" } ?? "")
    }
}

/// What a tuning table is keyed by: the layer's shape, the layout, the link, the
/// clock, the engines per rank and the machine.
public struct TuningKey: Codable, Hashable, Sendable, CustomStringConvertible {
    /// Host name, cores and BLAS kernel (`TuningKey.thisMachine`).
    public var machine: String
    /// The link model's name (native, balanced, balanced-pass, h800, l20, ...).
    public var link: String
    /// The clock the profile was timed on and what it charged (`Clock.timingName`: "wall", "device" or "device, host CPU ignored").
    public var clock: String
    /// The engines per rank that the candidates divide.
    public var coresPerRank: Int
    public var ranks: Int
    public var expertParallel: Int
    public var tensorParallel: Int
    public var tokensPerRank: Int
    public var modelWidth: Int
    public var hiddenWidth: Int
    public var experts: Int
    public var topK: Int
    public var activation: Activation

    public init(
        config: MoEConfig, ranks: Int, tensorParallel: Int, link: String, clock: String, coresPerRank: Int, machine: String
    ) {
        (self.machine, self.link, self.clock, self.coresPerRank, self.ranks) = (machine, link, clock, coresPerRank, ranks)
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
            + "\(ranks) ranks (EP=\(expertParallel) x TP=\(tensorParallel)), link \(link), \(clock) clock, "
            + "\(coresPerRank) engines per rank, machine \(machine)"
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
        best = measurements.min { $0.milliseconds < $1.milliseconds }?.split ?? .fixedDefault(coresPerRank: key.coresPerRank)
    }

    public func milliseconds(_ split: WorkloadSplit) -> Double? { measurements.first { $0.split == split }?.milliseconds }
}

/// The profiles `comet-bench tune` measured, as a JSON file: `{"entries": [...]}`.
public struct TuningTable: Codable, Sendable {
    public private(set) var entries: [TuningEntry] = []

    public init() {}

    /// Reads `path`; an absent file is an empty table, an unreadable, unparsable or
    /// malformed one an error of one line, and so is a table written before keys
    /// recorded the clock and the engines per rank (its profiles are not comparable).
    public static func load(_ path: String) throws -> TuningTable {
        guard FileManager.default.fileExists(atPath: path) else { return TuningTable() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("cannot read the tuning table \(path): it is not a readable file")
        }
        do {
            let parsed = try JSONText.parse(data)  // JSONDecoder's own syntax errors do not say where
            let entries = ((parsed as? [String: Any])?["entries"] as? [Any]) ?? []
            let keys = entries.compactMap { ($0 as? [String: Any])?["key"] as? [String: Any] }
            if keys.contains(where: { $0["clock"] == nil }) {
                throw TableError.predatesClocks
            }
            return try JSONDecoder().decode(TuningTable.self, from: data)
        } catch TableError.predatesClocks {
            throw InputError("the tuning table \(path) predates device time: its keys lack the clock and the engines per rank "
                + "that its candidates were profiled on; profile again into a new table (comet-bench tune --table)")
        } catch let error as InputError {
            throw InputError("the tuning table \(path) does not parse as JSON: \(error)")
        } catch let error as DecodingError {
            throw InputError("the tuning table \(path) is not one comet-bench tune wrote: \(JSONText.describe(error))")
        }
    }

    private enum TableError: Error { case predatesClocks }

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
    /// The split, and why it was chosen (one line, for the log). `host`: the host's
    /// cores as the ranks share them, on wall time; nil on a per-rank clock (device
    /// time), where every engine has its own core.
    /// `gemmGFLOPs(m, n, k)`: single-thread GFLOP/s of a GEMM [m, k] x [k, n] on this machine.
    public static func choose(
        _ key: TuningKey, table: TuningTable?, link: LinkModel, host: HostCores?,
        gemmGFLOPs: @escaping (_ m: Int, _ n: Int, _ k: Int) -> Double
    ) -> (split: WorkloadSplit, reason: String) {
        let fixed = WorkloadSplit.fixedDefault(coresPerRank: key.coresPerRank)
        if let entry = table?.entry(for: key) {
            let best = entry.milliseconds(entry.best).map { String(format: "%.1f ms", $0) } ?? "?"
            let fixedTime = entry.milliseconds(fixed).map { String(format: ", the fixed default %.1f ms", $0) } ?? ""
            return (entry.best, "measured: the tuning table's best of \(entry.measurements.count) candidates (\(best)\(fixedTime))")
        }
        let model = CostModel(key: key, link: link, host: host, gemmGFLOPs: gemmGFLOPs)
        let candidates = WorkloadSplit.candidates(coresPerRank: key.coresPerRank)
        let best = candidates.min { model.seconds($0) < model.seconds($1) } ?? fixed
        return (best, String(format: "cost model (no tuning-table entry for this shape, layout, link, clock, engines per rank and "
                                + "machine): predicts %.1f ms against %.1f ms for the fixed default",
                             1e3 * model.seconds(best), 1e3 * model.seconds(fixed)))
    }
}

/// The host's cores and the ranks of a node that share them: what the cost model
/// charges for oversubscription on wall time.
public struct HostCores: Sendable, Equatable {
    public let cores: Int
    public let ranksPerNode: Int

    public init(cores: Int, ranksPerNode: Int) { (self.cores, self.ranksPerNode) = (cores, ranksPerNode) }

    /// Runnable ranks per core.
    var load: Double { Double(ranksPerNode) / Double(max(1, cores)) }
}

/// A first-order model of one comet forward + backward on one rank, for shapes
/// the tuning table lacks. R = T k TP rows arrive per rank, evenly from W ranks.
///
/// - Link: D = C = latency + (R / W) N 4 bytes / bandwidth per exchange (all rank
///   pairs at once).
/// - GEMMs: FLOPs over the single-thread rate measured at the GEMM's shape
///   (`gemmGFLOPs(m, n, k)`, which captures how thin tiles lose efficiency), spread
///   over the GEMM engines; on wall time never over more than the rank's share of
///   the host's cores.
/// - layer0 = max(D, GEMM1) + the first tile's transfer (the pipeline fills) + the
///   GEMM of the last tiles to land (it drains). layer1 = max(C, GEMM2) + the first
///   block's GEMM + the last block's transfer. Backward: the same halves with the
///   dgrad and wgrad GEMMs.
/// - On wall time every tile and block wakes a communicator thread, and on
///   oversubscribed cores a wake-up waits for a core. The model assumes 0.25 ms per
///   rank beyond the first on a core (0.75 ms at 4 ranks per core; traces showed up
///   to 10 ms at worst), shared by the communicator threads. This constant is a
///   guess, not a fit. On a per-rank clock (`host` nil) engines do not wait for
///   host cores, and neither term exists.
struct CostModel {
    let key: TuningKey
    let link: LinkModel
    /// The host's cores on wall time; nil on a per-rank clock.
    let host: HostCores?
    let gemmGFLOPs: (_ m: Int, _ n: Int, _ k: Int) -> Double

    func seconds(_ split: WorkloadSplit) -> Double {
        let (w, tp) = (key.ranks, key.tensorParallel)
        let rows = key.tokensPerRank * key.topK * tp, n = key.modelWidth, k = key.hiddenWidth / tp
        let upWidth = key.activation == .swiglu ? 2 * k : k
        let load = host?.load ?? 0  // runnable ranks per core; 0: an engine never waits for one
        /// Seconds of `count` GEMMs [m, kk] x [kk, nn] on this rank's GEMM engines.
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
        // Layer0 GEMMs run on up to `tilesPerGEMM` landed tiles at once, and layer1's
        // column blocks in row tiles of as many rows (`ColumnBlocks`).
        let merged = min(rows, ScheduleOptions.tilesPerGEMM * tile), rowTiles = Double(rows) / Double(merged)
        let up = gemm(merged, upWidth, n, count: rowTiles)
        func blockGEMMs(_ columns: Int, _ kk: Int, count: Double) -> Double { gemm(merged, columns, kk, count: count * rowTiles) }
        let down = blockGEMMs(split.blockColumns, k, count: Double(n) / Double(split.blockColumns))
        let forward = max(exchange, up) + transfer(rows: tile, columns: n) + gemm(tile, upWidth, n)
            + max(exchange, down) + blockGEMMs(first, k, count: 1) + transfer(rows: perPeer, columns: first)
        let dgradDown = gemm(merged, k, n, count: rowTiles)
        let backward = max(exchange, 2 * dgradDown) + transfer(rows: tile, columns: n) + 2 * gemm(tile, k, n)
            + max(exchange, 2 * blockGEMMs(split.blockColumns, upWidth, count: Double(n) / Double(split.blockColumns)))
            + blockGEMMs(first, upWidth, count: 1) + transfer(rows: perPeer, columns: first)
        return forward + backward + 2 * wakeUps
    }
}
