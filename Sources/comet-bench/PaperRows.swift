import CometMoE
import Foundation

/// One schedule at one point of `comet-bench paper`, as its CSV and JSON hold it: every
/// setting measured, `chosen` marking the one each table uses (chunked's best degree,
/// comet's best split: the lowest forward time; sequential always).
struct PaperRow: Encodable {
    let device: String
    let section: String
    let model: String
    /// M: tokens of the whole layer (every rank's), and each rank's share.
    let tokens: Int, tokens_per_rank: Int
    let tp: Int, ep: Int, experts: Int, top_k: Int, imbalance: Double
    /// sequential, chunked, comet or comet-rows.
    let schedule: String
    /// chunked's degree (d=4) or comet's communication SMs (24 SMs); empty for sequential.
    let setting: String
    let chosen: Bool
    let forward_us: Double, backward_us: Double, forward_comm_us: Double, forward_gemm_us: Double
    /// Sequential's forward over this one's.
    let speedup: Double
    /// Of sequential's forward communication, the share this schedule's forward saves:
    /// (sequential's forward - this one's) / sequential's forward communication (what
    /// `comet-bench layer` calls hidden; slower GEMMs count against it).
    let hidden_fraction: Double
    /// Of this schedule's own forward communication, the share that overlapped its GEMMs
    /// (the paper's latency hiding).
    let overlapped_fraction: Double

    static let csvHeader = "device,section,model,tokens,tokens_per_rank,tp,ep,experts,top_k,imbalance,schedule,setting,chosen,"
        + "forward_us,backward_us,forward_comm_us,forward_gemm_us,speedup,hidden_fraction,overlapped_fraction"

    var csvLine: String {
        [device, section, model, "\(tokens)", "\(tokens_per_rank)", "\(tp)", "\(ep)", "\(experts)", "\(top_k)", "\(imbalance)",
         schedule, setting, "\(chosen)"].joined(separator: ",") + ","
            + [forward_us, backward_us, forward_comm_us, forward_gemm_us, speedup, hidden_fraction, overlapped_fraction]
            .map { String(format: "%.4f", $0) }.joined(separator: ",")
    }
}

/// The rows of one point: what it is, and each schedule's runs (`PaperRuns.schedules`).
struct PaperPoint {
    let device: String, section: String, model: PaperModel, config: MoEConfig, ranks: Int, tp: Int

    func rows(_ runs: [(kind: ScheduleKind, setting: Int, PaperTiming)]) -> [PaperRow] {
        guard let sequential = runs.first(where: { $0.kind == .sequential })?.2 else { return [] }
        let best = Dictionary(grouping: runs, by: \.kind).mapValues { $0.min { $0.2.forward < $1.2.forward }!.setting }
        return runs.map { kind, setting, timing in
            PaperRow(device: device, section: section, model: model.name, tokens: config.tokensPerRank * ranks,
                     tokens_per_rank: config.tokensPerRank, tp: tp, ep: ranks / tp, experts: config.experts, top_k: config.topK,
                     imbalance: config.imbalance, schedule: kind.rawValue,
                     setting: kind == .sequential ? "" : kind == .chunked ? "d=\(setting)" : "\(setting) SMs",
                     chosen: best[kind] == setting, forward_us: timing.forward * 1e6, backward_us: timing.backward * 1e6,
                     forward_comm_us: timing.forwardComm * 1e6, forward_gemm_us: timing.forwardGEMM * 1e6,
                     speedup: sequential.forward / timing.forward,
                     hidden_fraction: (sequential.forward - timing.forward) / max(sequential.forwardComm, 1e-12),
                     overlapped_fraction: timing.overlappedFraction)
        }
    }
}

extension Array where Element == PaperRow {
    /// The chosen row of `schedule` among these (one point's).
    func chosen(_ schedule: ScheduleKind) -> PaperRow? { first { $0.schedule == schedule.rawValue && $0.chosen } }

    /// The rows grouped by point, in the order they were measured.
    var points: [[PaperRow]] {
        consecutiveRuns { "\($0.section) \($0.model) \($0.tokens) \($0.tp) \($0.experts) \($0.top_k) \($0.imbalance)" }
    }
}

extension Array {
    /// The elements in runs of consecutive ones with the same `key`, in order.
    func consecutiveRuns(by key: (Element) -> String) -> [[Element]] {
        var runs: [[Element]] = []
        var lastKey: String?
        for element in self {
            let elementKey = key(element)
            if elementKey == lastKey { runs[runs.count - 1].append(element) } else { runs.append([element]) }
            lastKey = elementKey
        }
        return runs
    }
}
