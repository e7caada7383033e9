import CometShim
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

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
        self.deadline = hostSeconds() + timeout
    }

    /// Sleeps until `doorbell` no longer reads `seen`, or `wakeIn` host seconds have
    /// passed, or a while has; polls with `pause` when there is no doorbell.
    public mutating func sleep(on doorbell: Doorbell?, seen: UInt32, wakeIn: Double = .infinity,
                               _ report: @autoclosure () -> String) {
        guard let doorbell else { return pause(report()) }
        let remaining = deadline - hostSeconds()
        if remaining <= 0 { Job.abort(report()) }
        // Wake up now and then anyway, to check the deadline.
        let nap = min(remaining, 0.05, wakeIn)
        if nap > 0 { chargeAsWaiting { comet_futex_wait(doorbell.word, seen, Int64(nap * 1e9)) } }
    }

    /// Gives the core away once; aborts the job with `report()` once the deadline has passed.
    public mutating func pause(_ report: @autoclosure () -> String) {
        attempts += 1
        if attempts <= Self.yieldsBeforeSleeping {
            chargeAsWaiting { _ = sched_yield() }
            return
        }
        if attempts % 64 == 0, hostSeconds() > deadline {
            Job.abort(report())
        }
        chargeAsWaiting { _ = usleep(sleepMicroseconds) }
        sleepMicroseconds = min(sleepMicroseconds * 2, Self.maxSleepMicroseconds)
    }
}

/// Runs `wait`, in which the calling thread waits for others (sleeps, yields, or
/// polls MPI requests and peers' flags), and reports the CPU it used meanwhile as
/// waiting: device time does not charge it (`DeviceClock`). Waits may nest: the
/// outermost one reports the whole, once. `wait` must not read a clock (a device
/// clock's step takes the waiting CPU reported so far and may hand the turn over).
@inline(__always) @discardableResult
public func chargeAsWaiting<T>(_ wait: () throws -> T) rethrows -> T {
    let start = threadCPUSeconds()
    let before = comet_take_waiting_cpu()
    defer {
        _ = comet_take_waiting_cpu()  // nested waits' share, already in the whole
        comet_add_waiting_cpu(before + threadCPUSeconds() - start)
    }
    return try wait()
}

/// The job this process belongs to (an MPI job, or this process alone).
public enum Job {
    /// Set by the first thread that aborts the job.
    private static let aborting = Atomic<Bool>(false)

    /// Prints `report` to standard error, prefixed with this rank and followed by the
    /// blocking calls still running (`BlockingCall`), and aborts every rank. Only the
    /// first caller in a process does so (Open MPI's abort is not safe to call from
    /// several threads at once); later callers wait for the end.
    public static func abort(_ report: String, code: Int32 = 70) -> Never {
        if aborting.exchange(true, ordering: .acquiringAndReleasing) {
            while true { pause() }
        }
        let blocked = BlockingCall.running().map { "; still blocked: \($0)" } ?? ""
        comet_write_stderr("comet: rank \(comet_world_rank()): \(report)\(blocked); aborting the job\n")
        comet_abort_job(code)
    }
}
