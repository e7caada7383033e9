import CometCore
import CometMPI
import Foundation

/// Chrome trace-event JSON (opens in Perfetto and chrome://tracing): one process
/// per rank, one track per thread, an event per activity.
public enum ChromeTrace {
    /// Seconds to add to this rank's `clock` to read rank 0's. None when the ranks'
    /// times already share one axis: on a per-rank clock (device time), where every
    /// collective ends for all ranks at the latest rank's time, and on a shared
    /// clock within one node (one monotonic clock). Across nodes on a shared clock:
    /// after a barrier every rank reads its clock and rank 0 broadcasts its reading,
    /// good to about a barrier's skew. Collective on a shared clock.
    public static func clockOffset(_ world: Communicator, clock: any Clock) throws -> Double {
        guard !clock.isPerRank, try world.nodeCount() > 1 else { return 0 }
        try world.barrier()
        let local = clock.now()
        var reference = [local]
        try world.broadcast(&reference, root: 0)
        return reference[0] - local
    }

    /// One trace event; times in microseconds.
    public struct Event: Codable, Sendable {
        let name: String
        let cat: String
        let ph: String
        let ts: Double
        let dur: Double?
        let pid: Int
        let tid: Int
        let args: [String: String]

        /// "gemm", "comm", "local" or "dense".
        var kind: String { String(cat.prefix { $0 != "," }) }
        /// The phase the event belongs to, e.g. "comet forward".
        var phase: String { String(cat.drop { $0 != "," }.dropFirst()) }

        func shifted(by delta: Double) -> Event {
            Event(name: name, cat: cat, ph: ph, ts: ts + delta, dur: dur, pid: pid, tid: tid, args: args)
        }

        static func metadata(_ kind: String, pid: Int, tid: Int, name: String) -> Event {
            Event(name: kind, cat: "__metadata", ph: "M", ts: 0, dur: nil, pid: pid, tid: tid, args: ["name": name])
        }
    }

    /// Every rank's `activities` (grouped under `phase` names, e.g. "comet forward"),
    /// timed on `clock`, as events at rank 0, times in microseconds from the job's
    /// earliest activity on rank 0's clock (`clockOffset`); nil on the other ranks. Collective.
    public static func gather(
        _ activities: [(phase: String, activity: Activity)], world: Communicator, clock: any Clock
    ) throws -> [Event]? {
        let offset = try clockOffset(world, clock: clock)
        let events = activities.map { phase, a in
            Event(name: a.label.isEmpty ? a.kind.rawValue : a.label, cat: "\(a.kind.rawValue),\(phase)", ph: "X",
                  ts: (a.start + offset) * 1e6, dur: (a.end - a.start) * 1e6, pid: world.rank, tid: a.thread,
                  args: a.arguments.merging(["phase": phase, "cpu_us": String(format: "%.0f", a.cpuSeconds * 1e6)]) { $1 })
        }
        let gathered = try world.gather([UInt8](try JSONEncoder().encode(events)), root: 0)
        guard world.rank == 0 else { return nil }
        let all = try gathered.flatMap { try JSONDecoder().decode([Event].self, from: Data($0)) }
        let origin = all.map(\.ts).min() ?? 0
        return all.map { $0.shifted(by: -origin) }.sorted { ($0.pid, $0.ts) < ($1.pid, $1.ts) }
    }

    /// Every rank's `activities`, timed on `clock`, as a Chrome trace at `trace` and
    /// an SVG Gantt chart titled `title` at `gantt`, both written by rank 0. Nothing
    /// when both are nil; collective otherwise.
    public static func export(
        _ activities: [(phase: String, activity: Activity)], world: Communicator, clock: any Clock, trace: String?,
        gantt: String?, title: @autoclosure () -> String
    ) throws {
        guard trace != nil || gantt != nil, let events = try gather(activities, world: world, clock: clock) else { return }
        if let trace { try write(events, clock: clock, to: trace) }
        if let gantt { try save(Data(GanttChart.svg(events, title: title(), clock: clock).utf8), to: gantt) }
    }

    /// Writes `events` (from `gather`, timed on `clock`) as a trace file, with process
    /// and thread names; its metadata (`otherData`) names the clock.
    public static func write(_ events: [Event], clock: any Clock, to path: String) throws {
        var metadata: [Event] = []
        for rank in Set(events.map(\.pid)).sorted() {
            metadata.append(.metadata("process_name", pid: rank, tid: 0, name: "rank \(rank)"))
            for thread in Set(events.filter { $0.pid == rank }.map(\.tid)).sorted() {
                metadata.append(.metadata("thread_name", pid: rank, tid: thread,
                                          name: trackName(thread: thread, events.filter { $0.pid == rank && $0.tid == thread })))
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let about = ["clock": clock.name, "clock_meaning": clock.meaning]
        try save(encoder.encode(Trace(traceEvents: metadata + events, displayTimeUnit: "ms", otherData: about)), to: path)
    }

    static let threadName = ["gemm": "GEMM thread", "comm": "communicator thread", "local": "main thread", "dense": "main thread"]

    /// "main thread 0" for track 0, else named by what the thread mostly did.
    static func trackName(thread: Int, _ events: [Event]) -> String {
        thread == 0 ? "main thread 0" : "\(threadName[dominantKind(events)] ?? "thread") \(thread)"
    }

    /// The activity kind most of `events` have.
    static func dominantKind(_ events: [Event]) -> String {
        let kinds = events.map(\.kind)
        return ["gemm", "comm", "local", "dense"].max { a, b in kinds.filter { $0 == a }.count < kinds.filter { $0 == b }.count }!
    }

    struct Trace: Encodable {
        let traceEvents: [Event]
        let displayTimeUnit: String
        /// Shown as the trace's metadata.
        let otherData: [String: String]
    }
}
