import CometMPI
import Synchronization

/// What a worker thread was doing.
public enum ActivityKind: String, Sendable, Codable {
    /// An expert GEMM tile (with its activation).
    case gemm
    /// Moving rows between ranks, including waiting on the link.
    case comm
    /// The top-k reduce, packing and other work on a rank's own rows.
    case local
}

/// One interval of one thread's work.
public struct Activity: Sendable {
    public let kind: ActivityKind
    public let thread: Int
    public let start: Double
    public let end: Double
    public let label: String
}

/// The activities of one rank's threads during one layer call, for the
/// communication and GEMM times a benchmark reports (and for traces).
public final class Timeline: Sendable {
    private let activities = Mutex<[Activity]>([])

    public init() {}

    /// Runs `body` and records it as `kind` on `thread`.
    @discardableResult
    public func record<T>(_ kind: ActivityKind, thread: Int, _ label: @autoclosure () -> String = "", _ body: () throws -> T) rethrows -> T {
        let start = monotonicSeconds()
        let result = try body()
        let activity = Activity(kind: kind, thread: thread, start: start, end: monotonicSeconds(), label: label())
        activities.withLock { $0.append(activity) }
        return result
    }

    public func reset() { activities.withLock { $0.removeAll(keepingCapacity: true) } }

    public var all: [Activity] { activities.withLock { $0 } }

    /// Seconds during which at least one thread did `kind` (the union of intervals).
    public func busySeconds(_ kind: ActivityKind) -> Double {
        let intervals = all.filter { $0.kind == kind }.map { ($0.start, $0.end) }.sorted { $0.0 < $1.0 }
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
