import CometCore
import CometKernels
import CometMPI

/// Checks of the runtime that `comet-train` and the test driver run on a live job.
public enum SelfCheck {
    /// Each rank puts a pattern into the next rank's window and raises its flag,
    /// waits for the previous rank's pattern and checks it, then gets the next
    /// rank's own data back and checks that too. Collective.
    /// - Returns: the path the window took.
    public static func windowRoundTrip(on comm: Communicator, forcePutGet: Bool, floats: Int = 4096) throws -> WindowPath {
        let bytes = floats * MemoryLayout<Float>.stride
        let window = try SymmetricWindow(communicator: comm, byteCount: 2 * bytes, flagCount: 1, forcePutGet: forcePutGet)
        let next = (comm.rank + 1) % comm.size
        let previous = (comm.rank + comm.size - 1) % comm.size
        let pattern = { (rank: Int) in (0..<floats).map { Float(rank * 100_000 + $0) } }

        // Second half: this rank's own data, for peers to get.
        let own = (window.localData + bytes).bindMemory(to: Float.self, capacity: floats)
        for (i, value) in pattern(comm.rank).enumerated() { own[i] = value }
        try window.publishLocalWrites()
        try comm.barrier()

        // First half: written by the previous rank.
        try pattern(comm.rank).withUnsafeBytes { source in
            try window.put(source.baseAddress!, byteCount: bytes, toRank: next, offset: 0)
        }
        try window.setFlag(0, to: 1, onRank: next)
        try window.waitForFlag(0, toReach: 1, "round-trip data from rank \(previous)")
        let received = UnsafeBufferPointer(start: window.localData.bindMemory(to: Float.self, capacity: floats), count: floats)
        var mismatches = zip(received, pattern(previous)).filter { $0 != $1 }.count

        var fetched = [Float](repeating: -1, count: floats)
        try fetched.withUnsafeMutableBytes { target in
            try window.get(into: target.baseAddress!, byteCount: bytes, fromRank: next, offset: bytes)
        }
        mismatches += zip(fetched, pattern(next)).filter { $0 != $1 }.count

        let total = try comm.allReduce(Int64(mismatches), .sum)
        try comm.barrier()
        try window.free()
        guard total == 0 else {
            throw InputError("window round trip on the \(window.path) path: \(total) floats arrived wrong")
        }
        return window.path
    }

    /// Runs `measure` on rank 0 while the other ranks wait without using a core,
    /// and gives every rank rank 0's result. Collective.
    public static func onRankZeroAlone(_ comm: Communicator, _ measure: () -> Double) throws -> Double {
        var result = [comm.rank == 0 ? measure() : 0]
        try comm.broadcast(&result, root: 0)
        return result[0]
    }
}
