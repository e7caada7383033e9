import CMPI
import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock, for timing and deadlines.
public func monotonicSeconds() -> Double { comet_monotonic_seconds() }

/// A 32-bit word that waiters sleep on until someone rings it (a Linux futex).
/// Ringing bumps the word and wakes every sleeper: in this process, or in any
/// process that maps the word, when it lies in shared memory.
public struct Doorbell: @unchecked Sendable {
    let word: UnsafeMutablePointer<UInt32>

    public init(_ word: UnsafeMutablePointer<UInt32>) { self.word = word }

    /// Read this before checking the condition a ring announces, then sleep on it.
    public var value: UInt32 { comet_load_acquire_u32(word) }

    public func ring() {
        _ = comet_fetch_add_u32(word, 1)
        comet_futex_wake_all(word)
    }
}

/// How a thread waits for another thread or rank: it never spins bare.
///
/// Eight ranks share two cores on a workstation. Where the producer rings a
/// `Doorbell`, the waiter sleeps in the kernel until it does. Otherwise it
/// first yields its core a few times and then sleeps, doubling the sleep up to
/// `maxSleepMicroseconds`. Past the deadline the wait reports what it waited
/// for and aborts the whole job.
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

    /// Sleeps until `doorbell` no longer reads `seen`, or the monotonic clock reads
    /// `wakeTime`, or a while has passed; polls with `pause` when there is no doorbell.
    public mutating func sleep(on doorbell: Doorbell?, seen: UInt32, wakeTime: Double = .infinity,
                               _ report: @autoclosure () -> String) {
        guard let doorbell else { return pause(report()) }
        let now = monotonicSeconds()
        let remaining = deadline - now
        if remaining <= 0 { MPIRuntime.abortJob(report()) }
        // Wake up now and then anyway, to check the deadline.
        let nap = min(remaining, 0.05, wakeTime - now)
        if nap > 0 { comet_futex_wait(doorbell.word, seen, Int64(nap * 1e9)) }
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
