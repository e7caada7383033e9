import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// Where comet reads time. Every schedule, the landing board, the all-to-all, the
/// link, the timeline, the trainer and the benches ask their clock for "now", wait
/// on it for an event's time, and have it time each piece of work. A rank has one
/// clock for its lifetime (`Device`).
///
/// `WallClock` is the host's monotonic clock. What measures the host itself reads
/// `hostSeconds()` instead: deadlines (`Backoff`), which bound how long the host
/// waits whatever time is emulated, BLAS rate measurements and the window bench.
public protocol Clock: Sendable {
    /// Seconds now, for the calling thread.
    func now() -> Double

    /// Host seconds a thread waiting for an event at `time` sleeps before the clock
    /// reads it (0 once it does).
    func delay(until time: Double) -> Double

    /// Runs `body`, a piece of the calling thread's work, and says when it started
    /// and ended on this clock and how much CPU it used.
    func work<T>(_ body: () throws -> T) rethrows -> Timed<T>
}

/// What a piece of work returned, and how long it took.
public struct Timed<T> {
    public let value: T
    /// When it started and ended, on its clock.
    public let start: Double
    public let end: Double
    /// Seconds the calling thread ran meanwhile (it may share its core).
    public let cpuSeconds: Double
}

extension Clock {
    /// Sleeps (no CPU) until the clock reads `time`.
    public func wait(until time: Double) {
        sleepHost(seconds: delay(until: time))
    }

    /// Seconds from `start` to now.
    public func seconds(since start: Double) -> Double { now() - start }
}

/// The host's monotonic clock: time is wall time on this machine.
public struct WallClock: Clock {
    public init() {}

    public func now() -> Double { comet_monotonic_seconds() }

    public func delay(until time: Double) -> Double { max(0, time - now()) }

    public func work<T>(_ body: () throws -> T) rethrows -> Timed<T> {
        let (start, cpuStart) = (now(), threadCPUSeconds())
        let value = try body()
        return Timed(value: value, start: start, end: now(), cpuSeconds: threadCPUSeconds() - cpuStart)
    }
}

/// Seconds on the host's monotonic clock: for deadlines and for host-side figures
/// (a progress bar's ETA), never for emulated time.
public func hostSeconds() -> Double { comet_monotonic_seconds() }

/// Sleeps the calling thread for `seconds` of host time without using CPU.
public func sleepHost(seconds: Double) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
    var left = timespec()
    while nanosleep(&request, &left) != 0 { request = left }
}

/// CPU seconds the calling thread has run.
public func threadCPUSeconds() -> Double { cpuSeconds(CLOCK_THREAD_CPUTIME_ID) }

/// CPU seconds all threads of this process have run.
public func processCPUSeconds() -> Double { cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) }

private func cpuSeconds(_ clock: clockid_t) -> Double {
    var now = timespec()
    clock_gettime(clock, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}
