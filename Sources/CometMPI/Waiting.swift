import CMPI
import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock, for timing and deadlines.
public func monotonicSeconds() -> Double { comet_monotonic_seconds() }

/// How a thread waits for another thread or rank: it never spins bare.
///
/// Eight ranks share two cores on a workstation, so a waiter first yields its
/// core a few times and then sleeps, doubling the sleep up to `maxSleepMicroseconds`.
/// Past `deadline` the wait reports what it waited for and aborts the whole job.
public struct Backoff {
    /// Yields before the first sleep.
    static let yieldsBeforeSleeping = 16
    static let maxSleepMicroseconds: UInt32 = 200

    private var attempts = 0
    private var sleepMicroseconds: UInt32 = 1
    private let deadline: Double

    /// A backoff whose wait may last `timeout` seconds.
    public init(timeout: Double) {
        self.deadline = monotonicSeconds() + timeout
    }

    /// Gives the core away once; aborts the job with `report()` once the deadline has passed.
    public mutating func pause(_ report: @autoclosure () -> String) {
        attempts += 1
        if attempts <= Self.yieldsBeforeSleeping {
            sched_yield()
            return
        }
        if attempts % 64 == 0, monotonicSeconds() > deadline {
            MPIRuntime.abortJob(report())
        }
        usleep(sleepMicroseconds)
        sleepMicroseconds = min(sleepMicroseconds * 2, Self.maxSleepMicroseconds)
    }
}

extension Communicator {
    /// Waits for a nonblocking MPI operation with `Backoff`, never spinning bare.
    func complete(_ request: inout MPI_Request?, _ call: String) throws {
        var backoff = Backoff(timeout: waitTimeout)
        while true {
            var done: Int32 = 0
            try check(MPI_Test(&request, &done, comet_status_ignore()), "MPI_Test(\(call))")
            if done != 0 { return }
            backoff.pause("waited \(waitTimeout) s for \(call) on a communicator of \(size) ranks (local rank \(rank)); a peer never joined")
        }
    }
}
