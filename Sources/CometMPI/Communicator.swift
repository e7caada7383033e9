import CMPI
import CometCore
import CometShim
#if canImport(Glibc)
import Glibc
#endif

/// A typed MPI communicator: a handle with its rank and size.
///
/// Communicators live until `MPI_Finalize`; comet makes a handful per run.
public struct Communicator: @unchecked Sendable {
    /// The raw MPI handle.
    public let handle: MPI_Comm
    /// This process's rank in the communicator.
    public let rank: Int
    /// Number of ranks in the communicator.
    public let size: Int
    /// Seconds any wait on this communicator may last before the job aborts.
    public private(set) var waitTimeout: Double
    /// The rank's clock, when collectives carry time (`withClock`).
    public private(set) var clock: (any Clock)?
    /// What collectives' data costs on the emulated link, on top of their time (`withClock`).
    public private(set) var cost: CollectiveCost

    init(handle: MPI_Comm, waitTimeout: Double, clock: (any Clock)? = nil, cost: CollectiveCost = .free) throws {
        var rank: Int32 = 0
        var size: Int32 = 0
        try check(MPI_Comm_rank(handle, &rank), "MPI_Comm_rank")
        try check(MPI_Comm_size(handle, &size), "MPI_Comm_size")
        self.handle = handle
        self.rank = Int(rank)
        self.size = Int(size)
        self.waitTimeout = waitTimeout
        self.clock = clock
        self.cost = cost
    }

    /// Ranks with the same `color` form one new communicator, ordered by `key`.
    public func split(color: Int, key: Int) throws -> Communicator {
        var child = comet_comm_null()
        try check(MPI_Comm_split(handle, Int32(color), Int32(key), &child), "MPI_Comm_split")
        return try Communicator(handle: child!, waitTimeout: waitTimeout, clock: clock, cost: cost)
    }

    /// Lets MPI make progress on this rank (`MPI_Iprobe`, which matches nothing here):
    /// where one-sided operations travel as messages (UCX over TCP), a passive target
    /// applies its peers' puts and atomics only inside MPI calls.
    public func progress() throws {
        var found: Int32 = 0
        try check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, handle, &found, comet_status_ignore()), "MPI_Iprobe")
    }

    /// The ranks of this communicator that share this process's node (shared memory).
    public func splitByNode() throws -> Communicator {
        var child = comet_comm_null()
        try check(
            MPI_Comm_split_type(handle, Int32(MPI_COMM_TYPE_SHARED), Int32(rank), comet_info_null(), &child),
            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)")
        return try Communicator(handle: child!, waitTimeout: waitTimeout, clock: clock, cost: cost)
    }

    /// Number of nodes (shared-memory domains) the communicator spans. Collective.
    public func nodeCount() throws -> Int { try sumOverNodes(1) }

    /// Cores (online CPUs) on all the nodes the communicator spans. Collective.
    public func coreCount() throws -> Int { try sumOverNodes(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The sum over nodes of `value`, each node's first rank contributing its own. Collective.
    private func sumOverNodes(_ value: Int) throws -> Int {
        let node = try splitByNode()
        return Int(try allReduce(Int64(node.rank == 0 ? value : 0), .sum))
    }

    /// The same communicator, and those split from it, with collectives that carry
    /// `clock`'s time when it is per rank (device time): every collective ends, for
    /// every rank, at the latest rank's time of entering it, plus its `cost`.
    public func withClock(_ clock: any Clock) -> Communicator {
        var copy = self
        copy.clock = clock
        return copy
    }

    /// The same communicator, and those split from it, with collectives whose data
    /// costs `cost` on the emulated link, on the communicator's clock. On a per-rank
    /// clock (device time) every collective ends, for every rank, at the latest
    /// rank's time of entering it plus its cost (the largest any rank reckons). On a
    /// clock the ranks share (wall time) a rank leaves once the MPI call is done and
    /// the cost has passed since it entered, as a wall-clock exchange on an emulated
    /// link waits for its transfers (CometMoE's `AllToAll`). `.free` (the native
    /// link, the default) adds nothing.
    public func withCost(_ cost: CollectiveCost) -> Communicator {
        var copy = self
        copy.cost = cost
        return copy
    }

    /// The same communicator with a different wait deadline.
    public func withWaitTimeout(_ seconds: Double) -> Communicator {
        var copy = self
        copy.waitTimeout = seconds
        return copy
    }
}
