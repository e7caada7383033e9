import CometCore
import CometDevices
import CometMoE
import Foundation

/// The 2-GPU case to check the model against real hardware: EP=2 on 2 modelled GPUs,
/// Mixtral's experts (E 8, top-k 2, GELU), balanced routing, M tokens per rank:
/// sequential's forward in its steps, and chunked's at d = 2, 4, 8.
struct TwoGPUCase {
    let runs: PaperRuns
    let gpu: GPUModel
    let out: String

    /// One M's figures, milliseconds.
    struct Row: Encodable {
        let device: String
        let tokens_per_rank: Int
        let dispatch_ms: Double, expert_gemms_ms: Double, combine_ms: Double, total_ms: Double
        let chunked_d2_ms: Double, chunked_d4_ms: Double, chunked_d8_ms: Double
    }

    /// Runs every M; rank 0 prints the table and writes paper-<gpu>-2gpu.csv and .json. Collective.
    func run() throws {
        var rows: [Row] = []
        for tokens in [4096, 8192, 16384] {
            let config = PaperModel.mixtral.config(tokens: tokens * 2, ranks: 2)
            let sequential = try runs.time(.sequential, ScheduleOptions(), config, tp: 1)
            var chunked: [Double] = []
            for d in [2, 4, 8] {
                var options = ScheduleOptions()
                options.chunks = d
                chunked.append(try runs.time(.chunked, options, config, tp: 1).forward * 1e3)
            }
            let seconds = { (label: String) in
                try runs.world.allReduce(sequential.forwardActivities.filter { $0.label == label }.reduce(0) { $0 + $1.end - $1.start }, .max)
            }
            rows.append(Row(device: gpu.name, tokens_per_rank: tokens, dispatch_ms: try seconds("dispatch") * 1e3,
                            expert_gemms_ms: sequential.forwardGEMM * 1e3, combine_ms: try seconds("combine") * 1e3,
                            total_ms: sequential.forward * 1e3, chunked_d2_ms: chunked[0], chunked_d4_ms: chunked[1],
                            chunked_d8_ms: chunked[2]))
        }
        guard runs.world.rank == 0 else { return }
        print("2 x \(gpu.name), EP=2, Mixtral experts (E 8, top-k 2, GELU), balanced routing, sequential forward, ms "
            + "(link \(gpu.link)):")
        print("M/rank  dispatch  expert GEMMs  combine  total   chunked d=2  d=4     d=8")
        for row in rows {
            print(String(format: "%-7d %8.3f  %12.3f  %7.3f  %6.3f  %11.3f  %6.3f  %6.3f", row.tokens_per_rank, row.dispatch_ms,
                         row.expert_gemms_ms, row.combine_ms, row.total_ms, row.chunked_d2_ms, row.chunked_d4_ms, row.chunked_d8_ms))
        }
        let header = "device,tokens_per_rank,dispatch_ms,expert_gemms_ms,combine_ms,total_ms,chunked_d2_ms,chunked_d4_ms,chunked_d8_ms"
        let lines = rows.map { row in
            "\(row.device),\(row.tokens_per_rank)," + [row.dispatch_ms, row.expert_gemms_ms, row.combine_ms, row.total_ms,
                                                       row.chunked_d2_ms, row.chunked_d4_ms, row.chunked_d8_ms]
                .map { String(format: "%.4f", $0) }.joined(separator: ",")
        }
        try save(Data(([header] + lines).joined(separator: "\n").appending("\n").utf8), to: "\(out)/paper-\(gpu.name)-2gpu.csv")
        try writeJSON(rows, to: "\(out)/paper-\(gpu.name)-2gpu.json")
        print("wrote \(out)/paper-\(gpu.name)-2gpu.csv and .json")
    }
}
