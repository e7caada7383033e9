import CMPI
import CometCore
import CometShim

/// The collectives comet needs. Each one starts the nonblocking MPI call and
/// completes it with `Backoff`, so a rank waiting for slower peers gives its
/// core away instead of spinning inside MPI.
extension Communicator {
    public func barrier() throws {
        let entered = enteringCollective(costing: cost.barrier(ranks: size))
        var request: MPI_Request? = nil
        try check(MPI_Ibarrier(handle, &request), "MPI_Ibarrier")
        try complete(&request, "MPI_Ibarrier", entered: entered)
    }

    /// Copies `root`'s `buffer` into every rank's `buffer`.
    public func broadcast<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        let entered = enteringCollective(costing: cost.broadcast(bytes: bytes(buffer.count, T.self), ranks: size))
        var request: MPI_Request? = nil
        try check(
            MPI_Ibcast(buffer.baseAddress, Int32(buffer.count), T.mpiDatatype, Int32(root), handle, &request),
            "MPI_Ibcast")
        try complete(&request, "MPI_Ibcast", entered: entered)
    }

    /// Reduces `buffer` element-wise over all ranks, in place; with `moving` false (a
    /// time-only run) it costs and synchronises as that reduction but moves no element.
    public func allReduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, _ op: ReduceOp, moving: Bool = true) throws {
        let entered = enteringCollective(costing: cost.allReduce(bytes: bytes(buffer.count, T.self), ranks: size))
        var request: MPI_Request? = nil
        let count = Int32(moving ? buffer.count : 0)
        try check(
            MPI_Iallreduce(comet_in_place(), buffer.baseAddress, count, T.mpiDatatype, op.handle, handle, &request),
            "MPI_Iallreduce")
        try complete(&request, "MPI_Iallreduce", entered: entered)
    }

    /// Every rank's `send` (same count on every rank), concatenated in rank order into `receive`.
    /// - Parameters: send: [c]; receive: [size * c].
    public func allGather<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>) throws {
        precondition(receive.count == send.count * size, "allGather: receive must hold size * send.count elements")
        let entered = enteringCollective(costing: cost.allGather(bytes: bytes(receive.count, T.self), ranks: size))
        var request: MPI_Request? = nil
        try check(
            MPI_Iallgather(send.baseAddress, Int32(send.count), T.mpiDatatype,
                           receive.baseAddress, Int32(send.count), T.mpiDatatype, handle, &request),
            "MPI_Iallgather")
        try complete(&request, "MPI_Iallgather", entered: entered)
    }

    /// Sends `sendCounts[r]` consecutive elements of `send` to rank `r` and receives
    /// `receiveCounts[r]` elements from rank `r`. Each rank's elements start at
    /// `sendOffsets[r]` / `receiveOffsets[r]` (in elements), or are packed in rank
    /// order when the offsets are nil; ranks may read overlapping send elements.
    public func allToAllV<T: MPIScalar>(
        _ send: UnsafeBufferPointer<T>, sendCounts: [Int], sendOffsets: [Int]? = nil,
        into receive: UnsafeMutableBufferPointer<T>, receiveCounts: [Int], receiveOffsets: [Int]? = nil
    ) throws {
        precondition(sendCounts.count == size && receiveCounts.count == size, "allToAllV: one count per rank")
        let packed = { (counts: [Int]) in counts.indices.map { counts[..<$0].reduce(0, +) } }
        let sendAt = sendOffsets ?? packed(sendCounts), receiveAt = receiveOffsets ?? packed(receiveCounts)
        precondition(zip(sendAt, sendCounts).allSatisfy { $0 >= 0 && $0 + $1 <= send.count }
                        && zip(receiveAt, receiveCounts).allSatisfy { $0 >= 0 && $0 + $1 <= receive.count },
                     "allToAllV: counts exceed the buffers")
        // Counts and displacements must stay in place until the operation completes.
        let table = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 4 * size)
        defer { table.deallocate() }
        for r in 0..<size {
            table[r] = Int32(sendCounts[r])
            table[size + r] = Int32(sendAt[r])
            table[2 * size + r] = Int32(receiveCounts[r])
            table[3 * size + r] = Int32(receiveAt[r])
        }
        let base = table.baseAddress!
        let entered = enteringCollective(costing: cost.allToAllV(
            sent: sendCounts.map { bytes($0, T.self) }, received: receiveCounts.map { bytes($0, T.self) }, me: rank))
        var request: MPI_Request? = nil
        try check(
            MPI_Ialltoallv(send.baseAddress, base, base + size, T.mpiDatatype,
                           receive.baseAddress, base + 2 * size, base + 3 * size, T.mpiDatatype, handle, &request),
            "MPI_Ialltoallv")
        try complete(&request, "MPI_Ialltoallv", entered: entered)
    }

    /// Reduces `send` over all ranks and leaves block `rank` of the result in `receive`.
    /// - Parameters: send: [size * c]; receive: [c].
    public func reduceScatter<T: MPIScalar>(
        _ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>, _ op: ReduceOp
    ) throws {
        precondition(send.count == receive.count * size, "reduceScatter: send must hold size * receive.count elements")
        let entered = enteringCollective(costing: cost.reduceScatter(bytes: bytes(send.count, T.self), ranks: size))
        var request: MPI_Request? = nil
        try check(
            MPI_Ireduce_scatter_block(send.baseAddress, receive.baseAddress, Int32(receive.count), T.mpiDatatype,
                                      op.handle, handle, &request),
            "MPI_Ireduce_scatter_block")
        try complete(&request, "MPI_Ireduce_scatter_block", entered: entered)
    }
}

/// Array forms of the collectives, for set-up code and tests.
extension Communicator {
    public func broadcast<T: MPIScalar>(_ values: inout [T], root: Int) throws {
        try values.withUnsafeMutableBufferPointer { buffer in try broadcast(buffer, root: root) }
    }

    public func allReduce<T: MPIScalar>(_ values: inout [T], _ op: ReduceOp) throws {
        try values.withUnsafeMutableBufferPointer { buffer in try allReduce(buffer, op) }
    }

    public func allReduce<T: MPIScalar>(_ value: T, _ op: ReduceOp) throws -> T {
        var values = [value]
        try allReduce(&values, op)
        return values[0]
    }

    public func allGather<T: MPIScalar & Numeric>(_ send: [T]) throws -> [T] {
        var receive = [T](repeating: 0, count: send.count * size)
        try send.withUnsafeBufferPointer { source in
            try receive.withUnsafeMutableBufferPointer { target in try allGather(source, into: target) }
        }
        return receive
    }

    /// `send` holds `send.count / size` elements for each rank, in rank order; returns
    /// as many from each rank, in rank order.
    public func allToAll<T: MPIScalar & Numeric>(_ send: [T]) throws -> [T] {
        precondition(send.count % size == 0, "allToAll: send must hold the same count for every rank")
        let count = send.count / size
        return try allToAllV(send, sendCounts: [Int](repeating: count, count: size), receiveCounts: [Int](repeating: count, count: size))
    }

    /// `send` packed in rank order with `sendCounts`; returns what the peers sent, in rank order.
    public func allToAllV<T: MPIScalar & Numeric>(_ send: [T], sendCounts: [Int]) throws -> [T] {
        let receiveCounts = try allToAll(sendCounts.map { Int64($0) }).map { Int($0) }
        return try allToAllV(send, sendCounts: sendCounts, receiveCounts: receiveCounts)
    }

    /// Every rank's `send` (any count) at `root`, in rank order; empty on the other ranks.
    public func gather<T: MPIScalar & Numeric>(_ send: [T], root: Int) throws -> [[T]] {
        let counts = try allGather([Int64(send.count)]).map { Int($0) }
        var sendCounts = [Int](repeating: 0, count: size)
        sendCounts[root] = send.count
        let receiveCounts = rank == root ? counts : [Int](repeating: 0, count: size)
        let received = try allToAllV(send, sendCounts: sendCounts, receiveCounts: receiveCounts)
        guard rank == root else { return [] }
        var start = 0
        return counts.map { count in
            defer { start += count }
            return Array(received[start..<(start + count)])
        }
    }

    /// `allToAllV` when both sides' counts are known.
    public func allToAllV<T: MPIScalar & Numeric>(_ send: [T], sendCounts: [Int], receiveCounts: [Int]) throws -> [T] {
        var receive = [T](repeating: 0, count: receiveCounts.reduce(0, +))
        try send.withUnsafeBufferPointer { source in
            try receive.withUnsafeMutableBufferPointer { target in
                try allToAllV(source, sendCounts: sendCounts, into: target, receiveCounts: receiveCounts)
            }
        }
        return receive
    }

    public func reduceScatter<T: MPIScalar & Numeric>(_ send: [T], _ op: ReduceOp) throws -> [T] {
        var receive = [T](repeating: 0, count: send.count / size)
        try send.withUnsafeBufferPointer { source in
            try receive.withUnsafeMutableBufferPointer { target in try reduceScatter(source, into: target, op) }
        }
        return receive
    }
}

/// A rank's entry into a collective: its time then, and the collective's cost as it reckons it.
struct CollectiveEntry {
    let time: Double
    let cost: Double
}

extension Communicator {
    /// This rank's entry into a collective that costs `cost` seconds: on a per-rank
    /// clock, or on a shared one when it costs anything (nil otherwise).
    func enteringCollective(costing cost: Double) -> CollectiveEntry? {
        guard let clock, clock.isPerRank || cost > 0 else { return nil }
        return CollectiveEntry(time: clock.now(), cost: cost)
    }

    /// Waits for a nonblocking collective with `Backoff`, never spinning bare; then, on
    /// a per-rank clock, ends at the latest time any rank `entered` plus the largest
    /// cost any rank reckons; on a shared clock, once its cost has passed since it
    /// entered (see `withClock`). The ranks' entries travel in an all-reduce started
    /// beside the collective, so the host waits for one round of the ranks, not two.
    func complete(_ request: inout MPI_Request?, _ call: String, entered: CollectiveEntry?) throws {
        guard let clock, let entered, clock.isPerRank else {
            try wait(&request, call)
            if let clock, let entered { clock.wait(until: entered.time + entered.cost) }
            return
        }
        var latest = [entered.time, entered.cost]
        try latest.withUnsafeMutableBufferPointer { latest in
            var time: MPI_Request? = nil
            try check(MPI_Iallreduce(comet_in_place(), latest.baseAddress, 2, Double.mpiDatatype, ReduceOp.max.handle, handle, &time),
                      "MPI_Iallreduce(clock)")
            try wait(&request, call)
            try wait(&time, "MPI_Iallreduce(clock) after \(call)", charged: false)
        }
        clock.wait(until: latest[0] + latest[1])
    }

    /// Waits for a nonblocking MPI operation with `Backoff`, never spinning bare.
    /// Open MPI copies and reduces the data inside `MPI_Test`: device time charges
    /// that CPU when it is the transfer (`charged`: by default when the cost says so,
    /// on the native link), never the naps in between.
    func wait(_ request: inout MPI_Request?, _ call: String, charged: Bool? = nil) throws {
        var backoff = Backoff(timeout: waitTimeout)
        func poll() throws {
            while true {
                var done: Int32 = 0
                try check(MPI_Test(&request, &done, comet_status_ignore()), "MPI_Test(\(call))")
                if done != 0 { return }
                backoff.pause("waited \(waitTimeout) s for \(call) on a communicator of \(size) ranks (local rank \(rank)); a peer never joined")
            }
        }
        if charged ?? cost.chargesMPIWork { try poll() } else { try chargeAsWaiting(poll) }
    }

    /// Bytes of `count` elements of `T`.
    func bytes<T>(_ count: Int, _: T.Type) -> Int { count * MemoryLayout<T>.stride }
}

extension Communicator {
    /// Runs `body` on rank 0 alone (reading a file, writing the run directory) and
    /// tells every rank whether it worked: if it threw, every rank throws an
    /// `InputError`, rank 0's with the error's own words, so that the failure is one
    /// uniform message rather than rank 0 leaving the others in the next collective.
    /// Collective.
    public func onRankZero(_ body: () throws -> Void) throws {
        var failure: String?
        if rank == 0 {
            do { try body() } catch { failure = "\(error)" }
        }
        var succeeded = [Int64(failure == nil ? 1 : 0)]
        try broadcast(&succeeded, root: 0)
        guard succeeded[0] == 1 else { throw InputError(failure ?? "rank 0 failed; it reports why") }
    }
}
