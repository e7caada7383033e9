import CometCore
import CometMPI
import CometMoE
import CometTraining
import Foundation

/// The paper's end-to-end experiment (its Figure 11): a training step's forward and
/// backward through the whole model (embedding, every block's attention, data parallel
/// over all W ranks, and MoE layer, the head and the loss), time-only, for each model
/// at M 4096 and 8192 and every (TP, EP). Each schedule runs with the setting the layer
/// section chose for the same model, M and TP (chunked's d, comet's SMs).
///
/// Blocks are identical, so a step at the model's depth L is timed from shallow models:
/// sequential's steps of 1 and 2 blocks give the rest (embedding, head, loss: 2 x one
/// block's step - two blocks'), which is the same for every schedule; a schedule's block
/// is its 1-block step less the rest, and L blocks take rest + L x block. (Both held to
/// 1e-15 s against every schedule's own 1- and 2-block steps, and steps of 4 blocks.)
struct PaperEndToEnd {
    let runs: PaperRuns
    let device: String
    /// Tokens per sequence: M / W at M 4096, one sequence per rank.
    static let sequenceLength = 512

    /// One forward, backward and gradient sync of `model` at `depth` blocks: the slowest
    /// rank's seconds of each, between barriers. Collective.
    private func step(
        _ model: PaperModel, tokens: Int, tp: Int, depth: Int, _ kind: ScheduleKind, _ options: ScheduleOptions
    ) throws -> [Double] {
        let world = runs.world, ranks = runs.world.size
        var config = TrainConfig()
        (config.modelWidth, config.expertWidth, config.layers, config.heads) = (model.modelWidth, model.hiddenWidth, depth, model.heads)
        (config.experts, config.topK, config.routing) = (model.experts, model.topK, .quotas)
        (config.sequenceLength, config.globalBatch) = (Self.sequenceLength, tokens / Self.sequenceLength)
        (config.evalSequences, config.schedule, config.scheduleOptions) = (config.globalBatch, kind, options)
        let layout = try ParallelLayout(expertParallel: ranks / tp, tensorParallel: tp)
        try config.validate(ranks: ranks, expertParallel: layout.expertParallel, tensorParallel: tp)
        let groups = try ProcessGroups(world: world, layout: layout).withCost(runs.link.collectiveCost)
        let sequences = config.sequencesPerRank(ranks: ranks)
        let transformer = try MoETransformer(config: config, vocabularySize: model.vocabulary, sequences: sequences, groups: groups,
                                             link: runs.link, device: runs.device)
        let clock = runs.device.clock
        let tokens = [Int32](repeating: 0, count: sequences * (Self.sequenceLength + 1))
        var seconds: [Double] = []
        let parts: [() throws -> Void] = [{ _ = try transformer.forward(tokens) }, transformer.backward,
                                          { _ = try transformer.syncGradients() }]
        for part in parts {
            try world.barrier()
            let start = clock.now()
            try part()
            try world.barrier()
            seconds.append(clock.seconds(since: start))
        }
        try transformer.release()
        try world.allReduce(&seconds, .max)
        return seconds
    }

    /// Every point's rows; `layer` holds the layer section's rows, whose chosen settings
    /// each schedule uses (a point missing there is measured first). Collective.
    func rows(_ models: [PaperModel], layer: [PaperRow], progress: (String) -> Void) throws -> [PaperStepRow] {
        var rows: [PaperStepRow] = []
        for model in models {
            for tokens in [4096, 8192] {
                for tp in [1, 2, 4, 8] {
                    let config = model.config(tokens: tokens, ranks: runs.world.size)
                    guard (try? config.validate(expertParallel: runs.world.size / tp, tensorParallel: tp)) != nil else { continue }
                    progress("end to end \(model.name) M \(tokens) TP \(tp)")
                    var chosen = layer.filter { $0.section == "layer" && $0.model == model.name && $0.tokens == tokens && $0.tp == tp }
                    if chosen.isEmpty {
                        let layerPoint = PaperPoint(device: device, section: "layer", model: model, config: config,
                                                    ranks: runs.world.size, tp: tp)
                        chosen = layerPoint.rows(try runs.schedules(config, tp: tp))
                    }
                    rows += try point(model, tokens: tokens, tp: tp, chosen: chosen)
                }
            }
        }
        return rows
    }

    /// Each schedule at one point, with its chosen layer setting. Collective.
    private func point(_ model: PaperModel, tokens: Int, tp: Int, chosen: [PaperRow]) throws -> [PaperStepRow] {
        let ranks = runs.world.size
        let twoBlocks = try step(model, tokens: tokens, tp: tp, depth: 2, .sequential, ScheduleOptions())
        var timings: [(ScheduleKind, String, (forward: Double, backward: Double, sync: Double))] = []
        var rest: [Double] = []
        for kind in ScheduleKind.allCases {
            guard let row = chosen.chosen(kind) else { continue }
            var options = ScheduleOptions()
            if kind == .chunked { options.chunks = Int(row.setting.dropFirst(2)) ?? 1 }
            if kind == .comet || kind == .cometRows { options.commSMs = Int(row.setting.split(separator: " ")[0]) }
            let oneBlock = try step(model, tokens: tokens, tp: tp, depth: 1, kind, options)
            if kind == .sequential { rest = zip(oneBlock, twoBlocks).map { 2 * $0 - $1 } }
            let full = zip(oneBlock, rest).map { $1 + Double(model.layers) * ($0 - $1) }
            timings.append((kind, row.setting, (full[0], full[1], full[2])))
        }
        guard let sequential = timings.first(where: { $0.0 == .sequential })?.2 else { return [] }
        return timings.map { kind, setting, time in
            PaperStepRow(device: device, model: model.name, tokens: tokens, tokens_per_rank: tokens / ranks, tp: tp, ep: ranks / tp,
                         layers: model.layers, sequence_length: Self.sequenceLength, schedule: kind.rawValue, setting: setting,
                         forward_ms: time.forward * 1e3, backward_ms: time.backward * 1e3, gradient_sync_ms: time.sync * 1e3,
                         speedup: (sequential.forward + sequential.backward) / (time.forward + time.backward),
                         speedup_with_sync: (sequential.forward + sequential.backward + sequential.sync)
                             / (time.forward + time.backward + time.sync))
        }
    }
}

/// One schedule at one point of the end-to-end section: the whole model's forward and
/// backward at the model's depth (`layers`), milliseconds, and the gradient sync after
/// them (all-reduces and norm; the same for every schedule, and the paper's figure
/// leaves it out).
struct PaperStepRow: Encodable {
    let device: String, model: String
    let tokens: Int, tokens_per_rank: Int, tp: Int, ep: Int, layers: Int, sequence_length: Int
    let schedule: String, setting: String
    let forward_ms: Double, backward_ms: Double, gradient_sync_ms: Double
    /// Sequential's forward + backward over this one's; and with the gradient sync added to both.
    let speedup: Double, speedup_with_sync: Double

    /// Forward + backward, ms.
    var stepMS: Double { forward_ms + backward_ms }

    static let csvHeader = "device,model,tokens,tokens_per_rank,tp,ep,layers,sequence_length,schedule,setting,forward_ms,"
        + "backward_ms,gradient_sync_ms,speedup,speedup_with_sync"

    var csvLine: String {
        [device, model, "\(tokens)", "\(tokens_per_rank)", "\(tp)", "\(ep)", "\(layers)", "\(sequence_length)", schedule, setting]
            .joined(separator: ",") + ","
            + [forward_ms, backward_ms, gradient_sync_ms, speedup, speedup_with_sync].map { String(format: "%.4f", $0) }
            .joined(separator: ",")
    }
}

extension Array where Element == PaperStepRow {
    /// The rows grouped by point (model, M, TP), in the order they were measured.
    var points: [[PaperStepRow]] { consecutiveRuns { "\($0.model) \($0.tokens) \($0.tp)" } }

    /// The row of `schedule` among these (one point's).
    func of(_ schedule: ScheduleKind) -> PaperStepRow? { first { $0.schedule == schedule.rawValue } }
}
