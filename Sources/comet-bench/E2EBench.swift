import ArgumentParser
import CometKernels
import CometLaunch
import CometMPI
import CometMoE
import CometTelemetry
import CometTraining
import Foundation

/// Training throughput of the whole model under each schedule, on the same
/// configuration and data, interleaved step by step in one run.
struct E2EBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "Training tokens/s of every schedule on the same configuration in one run.",
        discussion: """
            Every schedule trains its own copy of the model from the same seed on the same batches. The \
            balanced link is calibrated on sequential so that the busiest rank pair's exchanges in the MoE \
            layers take as long as their expert GEMMs.
            """)

    @Option(help: "A JSON training configuration (default: comet-train's embedded default).") var config: String?
    @Option(help: "Schedules to run (repeatable; default all four).") var schedule: [ScheduleKind] = ScheduleKind.allCases
    @Option(help: "native or balanced.") var link: LinkChoice = .balanced
    @Option(help: "Measured steps per schedule.") var iterations = 10
    @Option(help: "Warm-up steps per schedule.") var warmup = 2
    @Option(help: "Also write the figures to this JSON file.") var json: String?
    @Option(help: "Write every schedule's last step as an SVG Gantt timeline.") var gantt: String?
    @Option(help: "Write every schedule's last step as a Chrome trace (Perfetto, chrome://tracing).") var trace: String?
    @OptionGroup var layout: LayoutOptions
    @OptionGroup var runtime: RuntimeOptions

    enum LinkChoice: String, ExpressibleByArgument { case native, balanced }

    struct Row: Encodable {
        let schedule: String
        let step_ms: Double
        let tokens_per_s: Double
        let speedup: Double
        let moe_comm_ms: Double
        let moe_gemm_ms: Double
        /// CPU milliseconds of all ranks per step.
        let cpu_ms: Double
        /// cpu_ms over what the nodes' cores could run in step_ms.
        let cpu_use: Double
    }

    /// The fastest step any schedule could reach with sequential's work: all of the
    /// link time hidden (but no shorter than it), and no less CPU than sequential's on
    /// the nodes' cores.
    struct Bound: Encodable {
        let step_ms: Double
        let speedup: Double
        /// Link time of the busiest links per step (what there is to hide).
        let link_ms: Double
        let cores: Int
    }

    struct JSON: Encodable {
        let link: LinkModel
        let schedules: [Row]
        let bound: Bound?
    }

    func run(on context: RankContext) throws {
        let world = context.world
        let groups = try ProcessGroups(world: world, layout: layout.layout(worldSize: world.size))
        let base = try config.map { try TrainConfig.load(from: $0) } ?? TrainConfig()
        func trainer(_ kind: ScheduleKind) throws -> Trainer {
            var config = base
            config.schedule = kind
            config.steps = max(config.steps, warmup + iterations + 3)
            return try Trainer(config: config, dataPath: nil, groups: groups, link: .native, runDirectory: nil, resume: nil)
        }
        // Calibrate on sequential: MoE GEMM time per step (slowest rank), and each block's
        // busiest rank pair (two exchanges per pass, two passes per step).
        let calibration = try trainer(.sequential)
        var gemm: [Double] = []
        for _ in 0..<3 { gemm.append(try calibration.step().gemm_ms / 1e3) }
        var pairBytes = calibration.model.busiestPairBytes.map { Int64($0) }
        try world.allReduce(&pairBytes, .max)
        let model: LinkModel = link == .native ? .native
            : .balanced(gemmSeconds: gemm.sorted()[1], busiestPairBytes: Int(pairBytes.max() ?? 0), exchanges: 4 * base.layers)
        let linkMS = pairBytes.reduce(0) { $0 + 2 * model.passTime(busiestPairBytes: Int($1)) } * 1e3
        let cores = try world.coreCount()
        let trainers = try schedule.map { try trainer($0) }
        for trainer in trainers { trainer.model.useLink(model) }

        var samples = [[Trainer.StepReport]](repeating: [], count: trainers.count)
        for iteration in 0..<(warmup + iterations) {
            for offset in trainers.indices {
                let index = (offset + iteration) % trainers.count
                try world.barrier()
                let report = try trainers[index].step()
                if iteration >= warmup { samples[index].append(report) }
            }
        }
        if gantt != nil || trace != nil, let events = try ChromeTrace.gather(trainers.flatMap(\.lastStepActivities), world: world) {
            if let trace { try ChromeTrace.write(events, to: trace) }
            if let gantt {
                try save(Data(GanttChart.svg(events, title: "One training step per schedule, \(world.size) ranks, link \(model.name)").utf8), to: gantt)
            }
        }
        guard world.rank == 0 else { return }
        let tokens = Double(base.globalBatch * base.sequenceLength)
        let medians = samples.map { reports in
            (step: median(reports.map { tokens / $0.tokens_per_s }), comm: median(reports.map(\.comm_ms)),
             gemm: median(reports.map(\.gemm_ms)), cpu: median(reports.compactMap(\.cpu_ms)))
        }
        let sequential = schedule.firstIndex(of: .sequential).map { medians[$0] }
        let rows = zip(schedule, medians).map { kind, m in
            Row(schedule: kind.rawValue, step_ms: m.step * 1e3, tokens_per_s: tokens / m.step,
                speedup: sequential.map { $0.step / m.step } ?? .nan, moe_comm_ms: m.comm, moe_gemm_ms: m.gemm,
                cpu_ms: m.cpu, cpu_use: m.cpu / (m.step * 1e3 * Double(cores)))
        }
        let bound = sequential.map { s in
            let stepMS = max(s.step * 1e3 - linkMS, linkMS, s.cpu / Double(cores))
            return Bound(step_ms: stepMS, speedup: s.step * 1e3 / stepMS, link_ms: linkMS, cores: cores)
        }
        print("comet-bench e2e: \(world.size) ranks, layout \(groups.layout), \(base.layers) blocks, C=\(base.modelWidth), "
            + "E=\(base.experts), top-k \(base.topK), batch \(base.globalBatch) x \(base.sequenceLength) tokens")
        print("link: \(model)")
        print("medians of \(iterations) steps after \(warmup) warm-up steps; CPU: all ranks, use: of \(cores) cores")
        print("schedule      step ms   tokens/s  speedup  MoE comm ms  MoE GEMM ms   CPU ms  CPU use")
        for row in rows {
            print(padded(row.schedule, 12) + String(format: "  %7.1f  %9.0f  %6.2fx  %11.1f  %11.1f  %7.1f  %6.0f%%",
                                                    row.step_ms, row.tokens_per_s, row.speedup, row.moe_comm_ms,
                                                    row.moe_gemm_ms, row.cpu_ms, 100 * row.cpu_use))
        }
        if let bound {
            print(String(format: """
                bound for any schedule (the busiest links' %.1f ms per step all hidden, sequential's CPU on %d cores): \
                %.1f ms per step, %.2fx
                """, bound.link_ms, bound.cores, bound.step_ms, bound.speedup))
            printBoundShares(rows.map { ($0.schedule, $0.speedup) }, bound: bound.speedup)
        }
        if let json { try writeJSON(JSON(link: model, schedules: rows, bound: bound), to: json) }
    }
}
