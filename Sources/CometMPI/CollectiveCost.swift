/// What a collective's data costs on an emulated interconnect, in the latency-bandwidth
/// (alpha-beta) model: a message of m bytes between two ranks takes alpha + m beta, with
/// alpha = `latency` and beta = 1 / `bandwidth`, one rank pair's (as `LinkModel` in
/// CometMoE says it). Each collective of p ranks on n bytes is charged what the standard
/// algorithm takes, as analysed by R. Thakur, R. Rabenseifner and W. Gropp, "Optimization
/// of Collective Communication Operations in MPICH", IJHPCA 19(1), 2005 (lg: log2,
/// rounded up):
///
///     barrier         dissemination                 lg p alpha
///     broadcast       binomial tree                 lg p (alpha + n beta)
///     all-reduce      recursive doubling or ring,   min(lg p (alpha + n beta),
///                     whichever is faster               2 (p-1) alpha + 2 (p-1)/p n beta)
///     all-gather      ring (n: the gathered bytes)  (p-1) alpha + (p-1)/p n beta
///     reduce-scatter  ring (n: each rank's input)   (p-1) alpha + (p-1)/p n beta
///     all-to-all-v    pairwise exchange             sum over peers of alpha + m beta,
///                                                   m the larger of sent and received
///
/// MPICH takes recursive doubling for short all-reduces and a bandwidth-optimal one
/// for long ones; the ring's bandwidth term 2 (p-1)/p n beta is the optimum. Reduction
/// arithmetic (their gamma term) is not charged. A collective of one rank, or of no
/// bytes (barriers aside), costs nothing; so does every collective on `free`, the
/// native link, whose real MPI calls take what they take.
public struct CollectiveCost: Sendable, Equatable {
    /// Seconds from the start of a message to its first byte (alpha).
    public let latency: Double
    /// Bytes per second between two ranks (1 / beta); infinite when free.
    public let bandwidth: Double

    public init(latency: Double, bandwidth: Double) {
        precondition(latency >= 0 && bandwidth > 0, "a collective cost needs latency >= 0 and bandwidth > 0")
        self.latency = latency
        self.bandwidth = bandwidth
    }

    /// No modelled cost: collectives take what the MPI calls take.
    public static let free = CollectiveCost(latency: 0, bandwidth: .infinity)

    public var isFree: Bool { latency == 0 && bandwidth == .infinity }

    /// Seconds of a barrier of `p` ranks.
    public func barrier(ranks p: Int) -> Double {
        isFree || p <= 1 ? 0 : steps(p) * latency
    }

    /// Seconds of a broadcast of `n` bytes to `p` ranks.
    public func broadcast(bytes n: Int, ranks p: Int) -> Double {
        charged(n, p) ? steps(p) * message(Double(n)) : 0
    }

    /// Seconds of an all-reduce of `n` bytes on each of `p` ranks.
    public func allReduce(bytes n: Int, ranks p: Int) -> Double {
        guard charged(n, p) else { return 0 }
        let ring = 2 * Double(p - 1) * latency + 2 * share(p) * Double(n) / bandwidth
        return min(steps(p) * message(Double(n)), ring)
    }

    /// Seconds of an all-gather of `n` bytes in all (each rank gives n / p).
    public func allGather(bytes n: Int, ranks p: Int) -> Double { ring(n, p) }

    /// Seconds of a reduce-scatter of `n` bytes on each rank (each keeps n / p).
    public func reduceScatter(bytes n: Int, ranks p: Int) -> Double { ring(n, p) }

    /// Seconds of an all-to-all-v for a rank that sends `sent[r]` bytes to rank r and
    /// receives `received[r]` from it; `me`'s own share moves for free.
    public func allToAllV(sent: [Int], received: [Int], me: Int) -> Double {
        guard !isFree else { return 0 }
        return zip(sent, received).enumerated().reduce(0) { total, peer in
            let bytes = max(peer.element.0, peer.element.1)
            return peer.offset == me || bytes == 0 ? total : total + message(Double(bytes))
        }
    }

    /// (p-1) alpha + (p-1)/p n beta: the ring all-gather's and reduce-scatter's.
    private func ring(_ n: Int, _ p: Int) -> Double {
        charged(n, p) ? Double(p - 1) * latency + share(p) * Double(n) / bandwidth : 0
    }

    private func charged(_ n: Int, _ p: Int) -> Bool { !isFree && p > 1 && n > 0 }
    private func message(_ bytes: Double) -> Double { latency + bytes / bandwidth }
    private func share(_ p: Int) -> Double { Double(p - 1) / Double(p) }
    /// lg p rounded up: the rounds of a dissemination barrier, a binomial tree, recursive doubling.
    private func steps(_ p: Int) -> Double { Double(Int.bitWidth - (p - 1).leadingZeroBitCount) }
}
