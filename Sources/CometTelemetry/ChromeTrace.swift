import CometMPI
import CometMoE
import Foundation

/// Chrome trace-event JSON (opens in Perfetto and chrome://tracing): one process
/// per rank, one track per thread, an event per activity.
public enum ChromeTrace {
    /// Seconds to add to this rank's clock to read rank 0's: after a barrier every
    /// rank reads its clock and rank 0 broadcasts its reading. Exact on one node
    /// (one monotonic clock); across nodes good to about a barrier's skew. Collective.
    public static func clockOffset(_ world: Communicator) throws -> Double {
        try world.barrier()
        let local = monotonicSeconds()
        var reference = [local]
        try world.broadcast(&reference, root: 0)
        return reference[0] - local
    }

    /// One trace event; times in microseconds.
    struct Event: Codable {
        let name: String
        let cat: String
        let ph: String
        let ts: Double
        let dur: Double?
        let pid: Int
        let tid: Int
        let args: [String: String]

        func shifted(by delta: Double) -> Event {
            Event(name: name, cat: cat, ph: ph, ts: ts + delta, dur: dur, pid: pid, tid: tid, args: args)
        }

        static func metadata(_ kind: String, pid: Int, tid: Int, name: String) -> Event {
            Event(name: kind, cat: "__metadata", ph: "M", ts: 0, dur: nil, pid: pid, tid: tid, args: ["name": name])
        }
    }

    /// Gathers every rank's `activities` (grouped under `phase` names, e.g. "comet
    /// forward") at rank 0 and writes the trace to `path` there. Collective.
    /// Times start at the earliest activity of the job.
    public static func write(_ activities: [(phase: String, activity: Activity)], world: Communicator, to path: String) throws {
        let offset = try clockOffset(world)
        let encoder = JSONEncoder()
        let events = activities.map { phase, a in
            Event(name: a.label.isEmpty ? a.kind.rawValue : a.label, cat: "\(a.kind.rawValue),\(phase)", ph: "X",
                  ts: (a.start + offset) * 1e6, dur: (a.end - a.start) * 1e6, pid: world.rank, tid: a.thread,
                  args: a.arguments.merging(["phase": phase, "cpu_us": String(format: "%.0f", a.cpuSeconds * 1e6)]) { $1 })
        }
        let local = try encoder.encode(events)
        let gathered = try world.gather([UInt8](local), root: 0)
        guard world.rank == 0 else { return }
        var all = try gathered.flatMap { try JSONDecoder().decode([Event].self, from: Data($0)) }
        let origin = all.map(\.ts).min() ?? 0
        all = all.map { $0.shifted(by: -origin) }
        var metadata: [Event] = []
        for rank in 0..<world.size {
            metadata.append(.metadata("process_name", pid: rank, tid: 0, name: "rank \(rank)"))
            for thread in Set(all.filter { $0.pid == rank }.map(\.tid)).sorted() {
                let kinds = all.filter { $0.pid == rank && $0.tid == thread }.map { String($0.cat.prefix { $0 != "," }) }
                let kind = ["gemm", "comm", "local"].max { a, b in kinds.filter { $0 == a }.count < kinds.filter { $0 == b }.count }!
                let name = ["gemm": "GEMM thread", "comm": "communicator thread", "local": "main thread"][kind]!
                metadata.append(.metadata("thread_name", pid: rank, tid: thread, name: "\(name) \(thread)"))
            }
        }
        let trace = Trace(traceEvents: metadata + all.sorted { ($0.pid, $0.ts) < ($1.pid, $1.ts) }, displayTimeUnit: "ms")
        let output = JSONEncoder()
        output.outputFormatting = [.sortedKeys]
        do {
            try output.encode(trace).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw TraceError(description: "cannot write the trace \(path): \(error.localizedDescription)")
        }
    }

    struct Trace: Encodable {
        let traceEvents: [Event]
        let displayTimeUnit: String
    }
}

/// A trace that could not be written.
public struct TraceError: Error, CustomStringConvertible {
    public let description: String
}
