/// What a collective's data costs on an emulated interconnect, in the latency-bandwidth
/// (alpha-beta) model: a message of m bytes between two ranks takes alpha + m beta, with
/// alpha = `latency` and beta = 1 / `bandwidth`, one rank pair's (as `LinkModel` in
/// CometMoE says it). Every rank pair has a link of its own (the MoE all-to-all books
/// each pair's rows on its own link, all at once), so a rank sends to all its peers at
/// once, and the direct algorithms are the fast ones: the structure is that of R.
/// Thakur, R. Rabenseifner and W. Gropp, "Optimization of Collective Communication
/// Operations in MPICH", IJHPCA 19(1), 2005, on such a crossbar (lg: log2, rounded up):
///
///     barrier         dissemination                   lg p alpha
///     broadcast       the root sends to all at once   alpha + n beta
///     all-reduce      recursive doubling, or a direct min(lg p (alpha + n beta),
///                     reduce-scatter and all-gather       2 (alpha + n/p beta))
///     all-gather      direct (n: the gathered bytes)  alpha + n/p beta
///     reduce-scatter  direct (n: each rank's input)   alpha + n/p beta
///     all-to-all-v    direct                          alpha + m beta, m the most bytes
///                                                     one peer sends or receives
///
/// A ring would move the same bytes over one link of each rank at a time, (p-1) times
/// slower here: on a switch, a ring runs at each GPU's whole bandwidth, which this
/// model spreads over p-1 pair links.
///
/// On `perPort` links (a GPU's NVLink or PCIe port, `LinkModel.Queues.perPort`) a
/// rank's bytes to all its peers share one port per direction at `bandwidth`, so the
/// direct algorithms move (p-1)/p of the data through it, as NCCL's rings and
/// NVSwitch do (all-reduce 2 (alpha + (p-1)/p n beta)); broadcast alpha + n beta (a
/// pipelined chain); all-to-all-v alpha + the larger of all bytes sent and all
/// received.
///
/// Reduction arithmetic (their gamma term) is not charged. A collective of one rank,
/// or of no bytes (barriers aside), costs nothing; so does every collective on
/// `free`, the native link, whose real MPI calls take what they take.
public struct CollectiveCost: Sendable, Equatable {
    /// Seconds from the start of a message to its first byte (alpha).
    public let latency: Double
    /// Bytes per second between two ranks (1 / beta); infinite when free.
    public let bandwidth: Double
    /// Whether device time charges the CPU that MPI spends moving the data: on the
    /// native link that work is the transfer; on an emulated one the model is, and
    /// MPI's copying is the emulation's own work.
    public let chargesMPIWork: Bool
    /// Whether `bandwidth` is each rank pair's or each rank's port's, shared by its peers.
    public let links: Links

    public enum Links: Sendable, Equatable {
        /// Every rank pair has a link of its own.
        case perPair
        /// Each rank has one port per direction, shared by all its peers.
        case perPort
    }

    public init(latency: Double, bandwidth: Double, links: Links = .perPair) {
        precondition(latency >= 0 && bandwidth > 0, "a collective cost needs latency >= 0 and bandwidth > 0")
        (self.latency, self.bandwidth, chargesMPIWork, self.links) = (latency, bandwidth, false, links)
    }

    private init(chargesMPIWork: Bool) {
        (latency, bandwidth, self.chargesMPIWork, links) = (0, .infinity, chargesMPIWork, .perPair)
    }

    /// No modelled cost: collectives take what the MPI calls take (the native link).
    public static let free = CollectiveCost(chargesMPIWork: true)

    /// No cost here, and MPI's work not charged either: the data's transfers are
    /// modelled elsewhere (an MoE layer's rows, booked on its emulated link).
    public static let bookedElsewhere = CollectiveCost(chargesMPIWork: false)

    public var isFree: Bool { latency == 0 && bandwidth == .infinity }

    /// Seconds of a barrier of `p` ranks.
    public func barrier(ranks p: Int) -> Double {
        isFree || p <= 1 ? 0 : steps(p) * latency
    }

    /// Seconds of a broadcast of `n` bytes to `p` ranks.
    public func broadcast(bytes n: Int, ranks p: Int) -> Double {
        charged(n, p) ? message(Double(n)) : 0
    }

    /// Seconds of an all-reduce of `n` bytes on each of `p` ranks.
    public func allReduce(bytes n: Int, ranks p: Int) -> Double {
        guard charged(n, p) else { return 0 }
        return min(steps(p) * message(Double(n)), 2 * direct(n, p))
    }

    /// Seconds of an all-gather of `n` bytes in all (each rank gives n / p).
    public func allGather(bytes n: Int, ranks p: Int) -> Double { charged(n, p) ? direct(n, p) : 0 }

    /// Seconds of a reduce-scatter of `n` bytes on each rank (each keeps n / p).
    public func reduceScatter(bytes n: Int, ranks p: Int) -> Double { charged(n, p) ? direct(n, p) : 0 }

    /// Seconds of an all-to-all-v for a rank that sends `sent[r]` bytes to rank r and
    /// receives `received[r]` from it, all pairs at once; `me`'s own share moves for free.
    public func allToAllV(sent: [Int], received: [Int], me: Int) -> Double {
        guard !isFree else { return 0 }
        let peers = zip(sent, received).enumerated().filter { $0.offset != me }.map(\.element)
        let largest = links == .perPair ? peers.map { max($0.0, $0.1) }.max() ?? 0
            : max(peers.reduce(0) { $0 + $1.0 }, peers.reduce(0) { $0 + $1.1 })
        return largest == 0 ? 0 : message(Double(largest))
    }

    /// Every rank sends its n/p bytes to every peer at once: alpha + n/p beta on links
    /// of their own, alpha + (p-1)/p n beta through one port.
    private func direct(_ n: Int, _ p: Int) -> Double {
        message(Double(n) / Double(p) * (links == .perPair ? 1 : Double(p - 1)))
    }

    private func charged(_ n: Int, _ p: Int) -> Bool { !isFree && p > 1 && n > 0 }
    private func message(_ bytes: Double) -> Double { latency + bytes / bandwidth }
    /// lg p rounded up: the rounds of a dissemination barrier, a binomial tree, recursive doubling.
    private func steps(_ p: Int) -> Double { Double(Int.bitWidth - (p - 1).leadingZeroBitCount) }
}
