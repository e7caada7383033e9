import Synchronization

/// What a worker thread was doing.
public enum ActivityKind: String, Sendable, Codable {
    /// An expert GEMM tile (with its activation).
    case gemm
    /// Moving rows between ranks, including waiting on the link.
    case comm
    /// The top-k reduce, packing and other work on a rank's own rows.
    case local
    /// The model's dense layers (embedding, norms, attention, LM head).
    case dense
    /// Waiting: for rows to land, a flag to rise or another thread to finish.
    case wait
}

/// One interval of one thread's work.
public struct Activity: Sendable {
    public let kind: ActivityKind
    /// The thread's track: 0 is the rank's main thread, worker threads follow.
    public let thread: Int
    /// The interval, seconds on the timeline's clock.
    public let start: Double
    public let end: Double
    /// Seconds the thread actually ran (it may share its core with other ranks).
    public let cpuSeconds: Double
    /// FLOPs of the GEMMs in it (GEMM activities only).
    public let flops: Double
    public let label: String
    /// Details for traces: layer half, expert, rows or columns, bytes, peer rank.
    public let arguments: [String: String]
}

/// The activities of one rank's threads during one layer call, for the
/// communication and GEMM times a benchmark reports (and for traces). Every
/// piece of work it runs is timed by its clock, recorded or not.
public final class Timeline: Sendable {
    public let clock: any Clock
    private let activities = Mutex<[Activity]>([])
    private let recording = Atomic<Bool>(true)

    public init(clock: any Clock) { self.clock = clock }

    /// Whether activities are recorded (on by default); off, `record` only runs its body.
    public var isRecording: Bool {
        get { recording.load(ordering: .relaxed) }
        set { recording.store(newValue, ordering: .relaxed) }
    }

    /// Runs `body` and records it as `kind` on `thread`.
    @discardableResult
    public func record<T>(
        _ kind: ActivityKind, thread: Int, _ label: @autoclosure () -> String = "", _ arguments: [String: String] = [:],
        _ body: () throws -> T
    ) rethrows -> T {
        try measure(kind, thread: thread, label(), arguments, flops: { _ in 0 }, body)
    }

    /// Records a wait on `thread` from `start` until `end` (default: a `Clock.stamp()`,
    /// so the caller reads `now()` or waits before it looks at what other threads did
    /// or tells them a time), if it lasted at least 50 us.
    public func recordWait(thread: Int, since start: Double, until end: Double? = nil, _ label: @autoclosure () -> String) {
        let end = end ?? clock.stamp()
        guard isRecording, end - start >= 50e-6 else { return }
        let activity = Activity(kind: .wait, thread: thread, start: start, end: end, cpuSeconds: 0, flops: 0, label: label(), arguments: [:])
        activities.withLock { $0.append(activity) }
    }

    /// Records a transfer on `thread` that ran from `start` until `end` (its arrival
    /// by the link model, which may lie after the copy itself has finished).
    public func recordTransfer(thread: Int, start: Double, end: Double, _ label: @autoclosure () -> String, _ arguments: [String: String] = [:]) {
        guard isRecording else { return }
        let activity = Activity(kind: .comm, thread: thread, start: start, end: end, cpuSeconds: 0, flops: 0, label: label(),
                                arguments: arguments)
        activities.withLock { $0.append(activity) }
    }

    /// Runs `body`, which returns its FLOPs, and records it as a GEMM activity on `thread`.
    public func recordGEMM(thread: Int, _ label: @autoclosure () -> String, _ arguments: [String: String] = [:], _ body: () -> Double) {
        measure(.gemm, thread: thread, label(), arguments, flops: { $0 }, body)
    }

    @discardableResult
    private func measure<T>(
        _ kind: ActivityKind, thread: Int, _ label: @autoclosure () -> String, _ arguments: [String: String],
        flops: (T) -> Double, _ body: () throws -> T
    ) rethrows -> T {
        let timed = try clock.work(body)
        guard isRecording else { return timed.value }
        let activity = Activity(kind: kind, thread: thread, start: timed.start, end: timed.end, cpuSeconds: timed.cpuSeconds,
                                flops: flops(timed.value), label: label(), arguments: arguments)
        activities.withLock { $0.append(activity) }
        return timed.value
    }

    public func reset() { activities.withLock { $0.removeAll(keepingCapacity: true) } }

    public var all: [Activity] { activities.withLock { $0 } }

    /// GFLOP/s of the GEMM activities while their threads ran (FLOPs / CPU seconds).
    public var gemmGFLOPsPerThread: Double {
        let gemms = all.filter { $0.kind == .gemm && $0.flops > 0 }
        let cpu = gemms.reduce(0) { $0 + $1.cpuSeconds }
        return cpu > 0 ? gemms.reduce(0) { $0 + $1.flops } / cpu / 1e9 : 0
    }

    /// GFLOP/s of the GEMM activities over their time on the clock (FLOPs / summed
    /// durations): what a modelled GPU's GEMM engine reaches.
    public var gemmGFLOPsOnClock: Double {
        let gemms = all.filter { $0.kind == .gemm && $0.flops > 0 }
        let seconds = gemms.reduce(0) { $0 + ($1.end - $1.start) }
        return seconds > 0 ? gemms.reduce(0) { $0 + $1.flops } / seconds / 1e9 : 0
    }

    /// Seconds during which at least one thread did `kind` (the union of intervals).
    public func busySeconds(_ kind: ActivityKind) -> Double { Timeline.busySeconds(kind, in: all) }

    /// Seconds during which at least one of `activities` was of `kind`.
    public static func busySeconds(_ kind: ActivityKind, in activities: [Activity]) -> Double {
        busySeconds([kind], in: activities)
    }

    /// Seconds during which a `kind` activity overlapped a `other` one: communication
    /// hidden behind GEMMs, for instance.
    public static func overlapSeconds(_ kind: ActivityKind, _ other: ActivityKind, in activities: [Activity]) -> Double {
        busySeconds(kind, in: activities) + busySeconds(other, in: activities) - busySeconds([kind, other], in: activities)
    }

    /// Seconds during which at least one of `activities` was of one of `kinds`.
    public static func busySeconds(_ kinds: Set<ActivityKind>, in activities: [Activity]) -> Double {
        let intervals = activities.filter { kinds.contains($0.kind) }.map { ($0.start, $0.end) }.sorted { $0.0 < $1.0 }
        var total = 0.0
        var current: (Double, Double)?
        for interval in intervals {
            if let open = current, interval.0 <= open.1 {
                current = (open.0, max(open.1, interval.1))
            } else {
                if let open = current { total += open.1 - open.0 }
                current = interval
            }
        }
        if let open = current { total += open.1 - open.0 }
        return total
    }
}
