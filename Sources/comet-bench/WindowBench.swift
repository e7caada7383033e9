import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import Foundation

/// Symmetric-window bandwidth on both paths (across nodes, put/get alone): every
/// rank puts to (or gets from) the next rank in a ring, all at once, for messages
/// of 4 KiB to 4 MiB.
struct WindowBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "window",
        abstract: "Symmetric-window bandwidth for 4 KiB to 4 MiB messages, direct and put/get paths.",
        discussion: "Every rank moves data to or from the next rank at the same time, between two barriers; "
            + "the figures are for the whole job (all bytes moved / time between the barriers) and per rank "
            + "(the job's figure / ranks).")

    @Option(help: "Bytes each rank moves per message size and operation.")
    var volume = 64 << 20
    @Option(help: "Measurements per row; the table shows their median.")
    var repeats = 5
    @Option(help: "Also write the figures to this JSON file.")
    var json: String?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard volume >= 4 << 20 else { throw ValidationError("--volume must be at least 4 MiB (4194304)") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    static let messageSizes = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20]

    struct Row: Encodable {
        let path: String
        let operation: String
        let message_bytes: Int
        let per_rank_gb_per_s: Double
        let job_gb_per_s: Double
    }

    func run(on context: RankContext) throws {
        // The window's real bandwidth on this host (host seconds), whatever time a device emulates.
        let world = context.world
        // Ranks on several nodes share no memory: every window takes the put/get path.
        let nodes = try world.nodeCount()
        var rows: [Row] = []
        for forcePutGet in nodes == 1 ? [false, true] : [true] {
            let window = try SymmetricWindow(
                communicator: world, byteCount: Self.messageSizes.max()!, flagCount: 0, forcePutGet: forcePutGet)
            let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: window.byteCount, alignment: 64)
            staging.initializeMemory(as: UInt8.self, repeating: 1)
            let next = (world.rank + 1) % world.size
            for operation in ["put", "get"] {
                for size in Self.messageSizes {
                    let messages = max(4, volume / size)
                    var times: [Double] = []
                    for _ in 0..<repeats {
                        try world.barrier()
                        let start = hostSeconds()
                        for message in 0..<messages {
                            // Messages walk through the whole buffer, as an MoE layer's rows do.
                            let offset = message * size % window.byteCount
                            if operation == "put" {
                                try window.put(staging.baseAddress! + offset, byteCount: size, toRank: next, offset: offset)
                            } else {
                                try window.get(into: staging.baseAddress! + offset, byteCount: size, fromRank: next, offset: offset)
                            }
                        }
                        // Ranks that share a core run one after another: time the whole job.
                        try world.barrier()
                        times.append(try world.allReduce(hostSeconds() - start, .max))
                    }
                    let slowest = times.sorted()[times.count / 2]
                    let bytes = Double(messages * size)
                    rows.append(Row(path: window.path.rawValue, operation: operation, message_bytes: size,
                                    per_rank_gb_per_s: bytes / slowest / 1e9,
                                    job_gb_per_s: bytes * Double(world.size) / slowest / 1e9))
                }
            }
            staging.deallocate()
            try window.free()
        }
        guard world.rank == 0 else { return }
        print("comet-bench window: \(world.size) ranks in a ring, \(volume >> 20) MiB per rank per measurement, median of \(repeats)")
        if nodes > 1 { print("ranks on \(nodes) nodes: no direct path (it needs the ranks on one node)") }
        print("path      op    message   per rank GB/s   job GB/s")
        for row in rows {
            let size = row.message_bytes >= 1 << 20 ? "\(row.message_bytes >> 20) MiB" : "\(row.message_bytes >> 10) KiB"
            print(padded(row.path, 8) + "  " + padded(row.operation, 4) + "  " + padded(size, 7)
                  + String(format: "  %14.2f  %9.2f", row.per_rank_gb_per_s, row.job_gb_per_s))
        }
        if let json { try writeJSON(rows, to: json) }
    }
}
