/// Where thread blocks copy (h200_copy_by_ctas.csv's paths).
public enum CopyPath: String, CaseIterable, Sendable {
    /// Blocks on this GPU write a peer's memory.
    case push = "push_nvlink"
    /// Blocks on this GPU read a peer's memory.
    case pull = "pull_nvlink"
    /// Blocks copy within this GPU's memory.
    case local
}

extension GPUModel {
    /// Fraction of a link's peak that a copy reaches: H200's fastest measured copy by
    /// blocks (push, 132 blocks, 361.7 GB/s) over its 450 GB/s per direction, 0.80.
    public static let linkEfficiency = CopyTable.shared.fastestPeerRate / GPUModel.h200.linkBandwidth

    /// Bytes/s a copy reaches on the link, each direction: peak times `linkEfficiency`
    /// (H800 161 GB/s, L20 25.7 GB/s).
    public var achievedLinkBandwidth: Double { linkBandwidth * Self.linkEfficiency }

    /// Bytes/s (each byte counted once) that `blocks` thread blocks copy along `path`:
    /// H200's measured rate (h200_copy_by_ctas.csv), linear between measured block counts
    /// and constant beyond the most measured (132), capped by this GPU's achieved link
    /// bandwidth (peer paths) or half its achieved memory bandwidth (local: each byte is
    /// read and written). 0 with no block.
    ///
    /// Measured: one block pushes 20.4 GB/s and pulls 7.6 GB/s; pushes saturate near 16
    /// blocks, pulls near 48, both near 360 GB/s.
    public func copyRate(_ path: CopyPath, blocks: Int) -> Double {
        precondition(blocks >= 0, "\(blocks) blocks")
        guard blocks > 0 else { return 0 }
        let cap = path == .local ? achievedMemoryBandwidth / 2 : achievedLinkBandwidth
        return min(CopyTable.shared.rates[path]!.at(Double(blocks)), cap)
    }

    /// Seconds `blocks` thread blocks take to copy `bytes` along `path`: the transfer
    /// latency (peer paths) or a launch (local), then the bytes at `copyRate`; 0 for
    /// nothing.
    public func copySeconds(bytes: Int, _ path: CopyPath, blocks: Int) -> Double {
        guard bytes > 0 else { return 0 }
        let start = path == .local ? launchSeconds : transferLatency
        return start + Double(bytes) / copyRate(path, blocks: blocks)
    }
}

/// The copy rates of h200_copy_by_ctas.csv by path.
struct CopyTable: Sendable {
    static let shared = CopyTable(MeasuredTables.copies)

    /// Per path: bytes/s against blocks.
    let rates: [CopyPath: Curve]
    /// The fastest measured copy by blocks to or from the peer, bytes/s.
    let fastestPeerRate: Double

    init(_ rows: [MeasuredTables.Copy]) {
        var rates: [CopyPath: Curve] = [:]
        for path in CopyPath.allCases {
            let points = rows.filter { $0.path == path.rawValue }.map { (x: Double($0.ctas), y: $0.rate) }
            precondition(!points.isEmpty, "no copies along \(path.rawValue) in h200_copy_by_ctas.csv")
            rates[path] = Curve(points: points)
        }
        self.rates = rates
        fastestPeerRate = rows.filter { $0.path == CopyPath.push.rawValue || $0.path == CopyPath.pull.rawValue }
            .map(\.rate).max()!
    }
}
