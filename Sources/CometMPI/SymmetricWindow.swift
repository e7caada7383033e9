import CMPI
import CometCore
import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// How a symmetric window reaches the peers' buffers.
public enum WindowPath: String, Sendable, CustomStringConvertible {
    /// All ranks share a node: `MPI_Win_allocate_shared`; a peer's buffer is plain
    /// memory, written with stores and flagged with C11 release/acquire atomics.
    case direct
    /// `MPI_Win_allocate` in one passive-target epoch: `MPI_Put`/`MPI_Get` move the
    /// data and MPI atomics (`MPI_Accumulate`, `MPI_Fetch_and_op`) move the flags.
    /// Works across nodes.
    case putGet

    public var description: String {
        switch self {
        case .direct: "direct (MPI_Win_allocate_shared)"
        case .putGet: "put/get (MPI_Win_allocate)"
        }
    }
}

/// Comet's symmetric buffer: every rank of a communicator holds a segment of the
/// same size, made of a doorbell, `flagCount` ready flags and `byteCount` data bytes.
///
/// Producers write a peer's data and then raise one of its flags (release); the
/// peer waits for the flag (acquire) and then reads its data. Flags are counters
/// (`UInt64`) that only grow, so a new round waits for a larger value and no
/// flag is ever reset. On the direct path, raising a flag also rings the target's
/// doorbell, so waiters sleep in the kernel instead of polling. Every call here may
/// come from any thread.
/// `free()` is collective and must be called by every rank.
public final class SymmetricWindow: @unchecked Sendable {
    public let communicator: Communicator
    public let path: WindowPath
    /// Data bytes per rank.
    public let byteCount: Int
    /// Ready flags per rank.
    public let flagCount: Int

    /// The doorbell and each flag sit on their own cache line.
    static let flagStride = 64

    private var window: MPI_Win?
    /// This rank's segment: flags, then data.
    private let segment: UnsafeMutableRawPointer
    /// Every rank's segment, mapped into this process (direct path only).
    private let peerSegments: [UnsafeMutableRawPointer]
    private var dataOffset: Int { (1 + flagCount) * Self.flagStride }

    /// Allocates the window on every rank of `communicator`. Collective.
    ///
    /// - Parameter forcePutGet: use `MPI_Put`/`MPI_Get` even when all ranks share a
    ///   node, to exercise the multi-node path on one machine. Same on every rank.
    /// - Parameter zeroingData: zero the data bytes, not only the flags (a run that never
    ///   reads them, time-only, leaves their pages untouched and so not resident).
    public init(
        communicator: Communicator, byteCount: Int, flagCount: Int, forcePutGet: Bool = false, zeroingData: Bool = true
    ) throws {
        precondition(byteCount >= 0 && flagCount >= 0, "window sizes must not be negative")
        self.communicator = communicator
        self.byteCount = byteCount
        self.flagCount = flagCount
        let segmentBytes = (1 + flagCount) * Self.flagStride + (byteCount + Self.flagStride - 1) / Self.flagStride * Self.flagStride
        let sharesOneNode = try communicator.splitByNode().size == communicator.size
        self.path = sharesOneNode && !forcePutGet ? .direct : .putGet

        var window = comet_win_null()
        var base: UnsafeMutableRawPointer? = nil
        switch path {
        case .direct:
            var info = comet_info_null()
            try check(MPI_Info_create(&info), "MPI_Info_create")
            defer { MPI_Info_free(&info) }
            try check(MPI_Info_set(info, "alloc_shared_noncontig", "true"), "MPI_Info_set")
            try check(
                MPI_Win_allocate_shared(MPI_Aint(segmentBytes), 1, info, communicator.handle, &base, &window),
                "MPI_Win_allocate_shared")
            var peers: [UnsafeMutableRawPointer] = []
            for rank in 0..<communicator.size {
                var size: MPI_Aint = 0
                var unit: Int32 = 0
                var peerBase: UnsafeMutableRawPointer? = nil
                try check(MPI_Win_shared_query(window, Int32(rank), &size, &unit, &peerBase), "MPI_Win_shared_query")
                peers.append(peerBase!)
            }
            self.peerSegments = peers
        case .putGet:
            try check(
                MPI_Win_allocate(MPI_Aint(segmentBytes), 1, comet_info_null(), communicator.handle, &base, &window),
                "MPI_Win_allocate")
            self.peerSegments = []
        }
        try check(MPI_Win_set_errhandler(window, comet_errors_return()), "MPI_Win_set_errhandler")
        self.window = window
        self.segment = base!
        segment.initializeMemory(as: UInt8.self, repeating: 0, count: zeroingData ? segmentBytes : dataOffset)
        if path == .putGet {
            try check(MPI_Win_lock_all(Int32(MPI_MODE_NOCHECK), window), "MPI_Win_lock_all")
        }
        try communicator.barrier()
    }

    /// This rank's data bytes.
    public var localData: UnsafeMutableRawPointer { segment + dataOffset }

    /// This rank's doorbell, rung whenever a flag here is raised (direct path only).
    public var localDoorbell: Doorbell? { path == .direct ? doorbell(rank: communicator.rank) : nil }

    private func doorbell(rank: Int) -> Doorbell {
        Doorbell(peerSegments[rank].assumingMemoryBound(to: UInt32.self))
    }

    /// Releases the window on every rank. Collective.
    public func free() throws {
        guard window != nil else { return }
        if path == .putGet { try check(MPI_Win_unlock_all(window), "MPI_Win_unlock_all") }
        try check(MPI_Win_free(&window), "MPI_Win_free")
        self.window = nil
    }

    // MARK: Data

    /// Makes this rank's own stores to `localData` visible to peers' `get`s; call
    /// before the synchronisation (a barrier or a flag) that tells them to read.
    public func publishLocalWrites() throws {
        switch path {
        case .direct: comet_fence_seq_cst()
        case .putGet: try check(MPI_Win_sync(window), "MPI_Win_sync")
        }
    }

    /// Copies `byteCount` bytes from `source` to `rank`'s data at `offset`; complete at the target on return.
    public func put(_ source: UnsafeRawPointer, byteCount: Int, toRank rank: Int, offset: Int) throws {
        checkRange(rank: rank, offset: offset, byteCount: byteCount)
        switch path {
        case .direct:
            (peerSegments[rank] + dataOffset + offset).copyMemory(from: source, byteCount: byteCount)
        case .putGet:
            try completed("MPI_Put", onRank: rank) {
                MPI_Put(source, Int32(byteCount), comet_type_byte(), Int32(rank), MPI_Aint(dataOffset + offset),
                        Int32(byteCount), comet_type_byte(), window)
            }
        }
    }

    /// Copies `rows` rows of `rowBytes` bytes each to `rank`'s data at `offset`:
    /// source rows start `sourceStride` bytes apart, target rows `targetStride`
    /// bytes apart (a column block of a row-major matrix). Complete at the target on return.
    public func putRows(
        _ source: UnsafeRawPointer, rows: Int, rowBytes: Int, sourceStride: Int,
        toRank rank: Int, offset: Int, targetStride: Int
    ) throws {
        guard rows > 0, rowBytes > 0 else { return }
        checkRange(rank: rank, offset: offset, byteCount: (rows - 1) * targetStride + rowBytes)
        switch path {
        case .direct:
            let target = peerSegments[rank] + dataOffset + offset
            for row in 0..<rows {
                (target + row * targetStride).copyMemory(from: source + row * sourceStride, byteCount: rowBytes)
            }
        case .putGet:
            var origin = try strided(rows: rows, rowBytes: rowBytes, stride: sourceStride)
            var target = try strided(rows: rows, rowBytes: rowBytes, stride: targetStride)
            defer { MPI_Type_free(&origin); MPI_Type_free(&target) }
            try completed("MPI_Put", onRank: rank) {
                MPI_Put(source, 1, origin, Int32(rank), MPI_Aint(dataOffset + offset), 1, target, window)
            }
        }
    }

    /// A committed datatype of `rows` blocks of `rowBytes` bytes, `stride` bytes apart.
    private func strided(rows: Int, rowBytes: Int, stride: Int) throws -> MPI_Datatype? {
        var type: MPI_Datatype? = nil
        try check(MPI_Type_create_hvector(Int32(rows), Int32(rowBytes), MPI_Aint(stride), comet_type_byte(), &type),
                  "MPI_Type_create_hvector")
        try check(MPI_Type_commit(&type), "MPI_Type_commit")
        return type
    }

    /// Copies `byteCount` bytes of `rank`'s data at `offset` into `destination`; complete on return.
    public func get(into destination: UnsafeMutableRawPointer, byteCount: Int, fromRank rank: Int, offset: Int) throws {
        checkRange(rank: rank, offset: offset, byteCount: byteCount)
        switch path {
        case .direct:
            destination.copyMemory(from: peerSegments[rank] + dataOffset + offset, byteCount: byteCount)
        case .putGet:
            try completed("MPI_Get", onRank: rank) {
                MPI_Get(destination, Int32(byteCount), comet_type_byte(), Int32(rank), MPI_Aint(dataOffset + offset),
                        Int32(byteCount), comet_type_byte(), window)
            }
        }
    }

    // MARK: Flags

    /// Sets `rank`'s flag `index` to `value`, after every put this thread completed (release).
    public func setFlag(_ index: Int, to value: UInt64, onRank rank: Int) throws {
        try updateFlag(index, onRank: rank, value, op: comet_op_replace()) { comet_store_release($0, $1) }
    }

    /// Adds `delta` to `rank`'s flag `index` (release); for flags with several producers.
    public func addToFlag(_ index: Int, _ delta: UInt64, onRank rank: Int) throws {
        try updateFlag(index, onRank: rank, delta, op: comet_op_sum()) { _ = comet_fetch_add_acq_rel($0, $1) }
    }

    /// This rank's flag `index` (acquire: data written before it was raised is visible).
    public func flag(_ index: Int) throws -> UInt64 {
        precondition(index >= 0 && index < flagCount, "flag \(index) out of range 0..<\(flagCount)")
        switch path {
        case .direct:
            return comet_load_acquire(flagAddress(index, rank: communicator.rank))
        case .putGet:
            try communicator.progress()  // reading its own flag makes no progress on peers' puts
            var ignored: UInt64 = 0
            var value: UInt64 = 0
            let me = Int32(communicator.rank)
            try completed("MPI_Fetch_and_op", onRank: Int(me)) {
                MPI_Fetch_and_op(&ignored, &value, UInt64.mpiDatatype, me, MPI_Aint(flagOffset(index)), comet_op_no_op(), window)
            }
            try check(MPI_Win_sync(window), "MPI_Win_sync")
            return value
        }
    }

    /// Waits until this rank's flag `index` is at least `expected`, with `Backoff`.
    /// Past the communicator's deadline the job aborts with a report naming the flag,
    /// `what` it stands for (e.g. "rows from rank 3"), the expected and the last value.
    /// Device time does not charge the CPU of the polling.
    public func waitForFlag(_ index: Int, toReach expected: UInt64, _ what: @autoclosure () -> String) throws {
        var backoff = Backoff(timeout: communicator.waitTimeout)
        let doorbell = localDoorbell
        try chargeAsWaiting {
            while true {
                let seen = doorbell?.value ?? 0
                let value = try flag(index)
                if value >= expected { return }
                backoff.sleep(on: doorbell, seen: seen,
                              "waited \(communicator.waitTimeout) s for flag \(index) (\(what())) to reach \(expected); it holds \(value)")
            }
        }
    }

    private func updateFlag(
        _ index: Int, onRank rank: Int, _ operand: UInt64, op: MPI_Op,
        direct: (UnsafeMutablePointer<UInt64>, UInt64) -> Void
    ) throws {
        precondition(index >= 0 && index < flagCount, "flag \(index) out of range 0..<\(flagCount)")
        switch path {
        case .direct:
            direct(flagAddress(index, rank: rank), operand)
            doorbell(rank: rank).ring()
        case .putGet:
            var value = operand
            try completed("MPI_Accumulate", onRank: rank) {
                MPI_Accumulate(&value, 1, UInt64.mpiDatatype, Int32(rank), MPI_Aint(flagOffset(index)), 1, UInt64.mpiDatatype,
                               op, window)
            }
        }
    }

    /// Runs `operation`, the MPI call `name` on `rank`'s window (put/get path), and
    /// completes it at the target (`MPI_Win_flush`). Both may block in MPI for as long
    /// as the target takes (osc/ucx's accumulate takes a lock on the target), so they
    /// run as a `BlockingCall` with the communicator's deadline.
    private func completed(_ name: StaticString, onRank rank: Int, _ operation: () -> Int32) throws {
        try BlockingCall.run(name, target: rank, timeout: communicator.waitTimeout) {
            try check(operation(), "\(name)")
            try check(MPI_Win_flush(Int32(rank), window), "MPI_Win_flush")
        }
    }

    private func flagOffset(_ index: Int) -> Int { (1 + index) * Self.flagStride }

    private func flagAddress(_ index: Int, rank: Int) -> UnsafeMutablePointer<UInt64> {
        (peerSegments[rank] + flagOffset(index)).assumingMemoryBound(to: UInt64.self)
    }

    private func checkRange(rank: Int, offset: Int, byteCount: Int) {
        precondition(rank >= 0 && rank < communicator.size, "rank \(rank) is not in the window's communicator")
        precondition(offset >= 0 && byteCount >= 0 && offset + byteCount <= self.byteCount,
                     "bytes \(offset)..<\(offset + byteCount) are outside the window's \(self.byteCount) data bytes")
        precondition(byteCount <= Int(Int32.max), "a single transfer is limited to 2 GiB")
    }
}
