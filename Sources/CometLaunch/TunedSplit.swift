import CometCore
import CometKernels
import CometMPI
import CometMoE
import Foundation

/// Comet's workload split for one layer, as every rank must use it: rank 0 looks
/// the configuration up in a tuning table (or asks the cost model, measuring the
/// single-thread BLAS rates it needs) and tells the others. Collective.
public enum TunedSplit {
    /// The split of `coresPerRank` engines and, on rank 0, why it was chosen, for a
    /// run on `clock`. `tablePath` nil: cost model only.
    public static func resolve(
        config: MoEConfig, world: Communicator, tensorParallel: Int, link: LinkModel, clock: any Clock, coresPerRank: Int,
        tablePath: String?
    ) throws -> (split: WorkloadSplit, reason: String) {
        let host = try TunedSplit.host(world: world, clock: clock)
        var chosen: (split: WorkloadSplit, reason: String)?
        try world.onRankZero {
            let table = try tablePath.map { try TuningTable.load($0) }
            let key = TuningKey(config: config, ranks: world.size, tensorParallel: tensorParallel, link: link.name,
                                clock: clock.timingName, coresPerRank: coresPerRank,
                                machine: TuningKey.thisMachine(blasCore: OpenBLAS.coreName))
            var rates: [[Int]: Double] = [:]
            chosen = AdaptiveAssignment.choose(
                key, table: table, link: link, host: host,
                gemmGFLOPs: { m, n, k in
                    if let rate = rates[[m, n, k]] { return rate }
                    let rate = OpenBLAS.measureGFLOPs(m: m, n: n, k: k, seconds: 0.02)
                    rates[[m, n, k]] = rate
                    return rate
                })
        }
        let split = chosen?.split ?? .fixedDefault(coresPerRank: coresPerRank)
        var message = [split.commThreads, split.gemmThreads, split.tileRows, split.blockColumns, split.commSMs ?? -1].map { Int64($0) }
        try world.broadcast(&message, root: 0)
        return (WorkloadSplit(commThreads: Int(message[0]), gemmThreads: Int(message[1]), tileRows: Int(message[2]),
                              blockColumns: Int(message[3]), commSMs: message[4] < 0 ? nil : Int(message[4])),
                chosen?.reason ?? "")
    }

    /// The host's cores as this node's ranks share them, which the cost model charges
    /// on wall time; nil on a per-rank clock, where they do not matter. Collective.
    private static func host(world: Communicator, clock: any Clock) throws -> HostCores? {
        let ranksPerNode = try world.splitByNode().size
        return clock.isPerRank ? nil : HostCores(cores: ProcessInfo.processInfo.activeProcessorCount, ranksPerNode: ranksPerNode)
    }
}
