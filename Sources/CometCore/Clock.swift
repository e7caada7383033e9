import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// Where comet reads time. Every schedule, the landing board, the all-to-all, the
/// link, the timeline, the trainer and the benches ask their clock for "now", wait
/// on it for an event's time, and have it time each piece of work. A rank has one
/// clock for its lifetime (`Device`).
///
/// Two clocks implement it. `WallClock` is the host's monotonic clock: all ranks on
/// a host share it, and waiting means sleeping. `DeviceClock` is the emulated
/// device's time: one clock per engine (thread) of the rank, advanced by the CPU
/// time the engine uses and by the times of the events it waits for, whatever the
/// host does meanwhile.
///
/// What measures the host itself reads `hostSeconds()` instead: deadlines
/// (`Backoff`), which bound how long the host waits whatever time is emulated, BLAS
/// rate measurements and the window bench.
public protocol Clock: Sendable {
    /// "device" or "wall", for reports.
    var name: String { get }

    /// Whether every rank reads its own clock (device time), so that what moves
    /// between ranks must carry its time; false when the ranks share one.
    var isPerRank: Bool { get }

    /// Seconds now, for the calling thread. On a device clock the thread may first
    /// give its turn to the rank's earlier threads (`DeviceClock`): read it before
    /// looking at what the rank's other threads did or telling them a time.
    func now() -> Double

    /// Seconds now, like `now()`, for a record only (the start of a transfer or of a
    /// wait, the end of a wait). On a device clock the thread keeps its turn, so it
    /// must neither look at what the rank's other threads did nor tell them a time
    /// until it next reads `now()`, waits or ends a `work`.
    func stamp() -> Double

    /// Runs `body`, a piece of the calling thread's work, and says when it started
    /// and ended on this clock and how much CPU it used. The start is a `stamp()`:
    /// `body` reads `now()` or waits before it looks at what other threads of the rank
    /// did; the end is a `now()`.
    func work<T>(_ body: () throws -> T) rethrows -> Timed<T>

    /// Waits until the clock reads `time` (an event's time: a transfer's arrival).
    func wait(until time: Double)

    /// One wait for the rank's other threads, which ring `bell` when something
    /// happens: until it rings after `seen` or the clock reads `deadline`.
    /// `next()` is the time of the earliest event the caller waits for that has
    /// happened (nil: none yet). The caller checks what happened and waits again.
    func awaitLocal(
        bell: Doorbell?, seen: UInt32, until deadline: Double, backoff: inout Backoff, _ report: @autoclosure () -> String,
        next: @escaping @Sendable () -> Double?)

    /// The calling thread hands work to worker threads `engines` (`WorkerPool`), at its time.
    func fork(_ engines: Range<Int>)
    /// A worker thread starts its part of a job as engine `engine`.
    func begin(engine: Int)
    /// A worker thread has finished its part of a job.
    func end()
    /// The calling thread waits for `engines` to end their parts; `hostWait` waits on the host.
    func join(_ engines: Range<Int>, _ hostWait: () -> Void)
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
    /// Seconds from `start` to now.
    public func seconds(since start: Double) -> Double { now() - start }
}

/// The host's monotonic clock: time is wall time on this machine, shared by every
/// rank on it; waiting sleeps.
public struct WallClock: Clock {
    public init() {}

    public var name: String { "wall" }
    public var isPerRank: Bool { false }

    public func now() -> Double { comet_monotonic_seconds() }
    public func stamp() -> Double { now() }

    public func work<T>(_ body: () throws -> T) rethrows -> Timed<T> {
        let (start, cpuStart) = (now(), threadCPUSeconds())
        let value = try body()
        return Timed(value: value, start: start, end: now(), cpuSeconds: threadCPUSeconds() - cpuStart)
    }

    public func wait(until time: Double) { sleepHost(seconds: time - now()) }

    public func awaitLocal(
        bell: Doorbell?, seen: UInt32, until deadline: Double, backoff: inout Backoff, _ report: @autoclosure () -> String,
        next: @escaping @Sendable () -> Double?
    ) {
        backoff.sleep(on: bell, seen: seen, wakeIn: max(0, deadline - now()), report())
    }

    public func fork(_ engines: Range<Int>) {}
    public func begin(engine: Int) {}
    public func end() {}
    public func join(_ engines: Range<Int>, _ hostWait: () -> Void) { hostWait() }
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
