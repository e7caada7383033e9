import ArgumentParser
import CometCore
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
            Every schedule trains its own copy of the model from the same seed on the same batches. The link \
            (--link) is calibrated on sequential's training steps, with the busiest rank pair of any MoE layer \
            standing for every layer's; the report says how.
            Times are on --clock's time. CPU ms is the host CPU all ranks' threads ran per step (a host figure on \
            either clock, waits included). Its use is, on wall time, the share of the nodes' cores it fills in a \
            step; on device time, where every engine has its own core, the engines each rank kept busy on average \
            (CPU over ranks x step time). The bound's CPU term (sequential's CPU on the nodes' cores) exists on \
            wall time only.
            With --time-only (on a modelled GPU) nothing is computed and the model routes by quotas (the \
            configuration's routing is set to quotas): use it for shapes too large to compute.
            """)

    @Option(help: "A JSON training configuration (default: comet-train's embedded default).") var config: String?
    @Option(help: "Schedules to run (repeatable; default all four).") var schedule: [ScheduleKind] = ScheduleKind.allCases
    @Option(help: LinkChoice.help) var link: LinkChoice?
    @Option(help: "Engines per rank, the emulated device's cores (overrides the configuration's scheduleOptions.coresPerRank).")
    var coresPerRank: Int?
    @Option(help: "Measured steps per schedule.") var iterations = 10
    @Option(help: "Warm-up steps per schedule.") var warmup = 2
    @Option(help: "Also write the figures to this JSON file.") var json: String?
    @Option(help: "Write every schedule's last step as an SVG Gantt timeline.") var gantt: String?
    @Option(help: "Write every schedule's last step as a Chrome trace (Perfetto, chrome://tracing).") var trace: String?
    @OptionGroup var layout: LayoutOptions
    @OptionGroup var runtime: RuntimeOptions

    var linkIsEmulated: Bool { (try? linkChoice) != .native }
    var runsTimeOnly: Bool { true }

    /// `--link` on the run's emulated device (`LinkChoice.resolve`).
    var linkChoice: LinkChoice { get throws { try LinkChoice.resolve(link, on: runtime.device) } }

    func validate() throws { _ = try linkChoice }

    struct Row: Encodable {
        let schedule: String
        let step_ms: Double
        let tokens_per_s: Double
        let speedup: Double
        let moe_comm_ms: Double
        let moe_gemm_ms: Double
        /// Host CPU milliseconds of all ranks per step.
        let cpu_ms: Double
        /// cpu_ms over what the nodes' cores could run in step_ms (wall time), or over
        /// one engine per rank in step_ms: the engines each rank kept busy (device time).
        let cpu_use: Double
    }

    /// The fastest step any schedule could reach with sequential's work: all of the
    /// MoE link time hidden (but no shorter than it and the gradient all-reduce, which
    /// follows every MoE transfer of the step), and, on wall time, no less CPU than
    /// sequential's on the nodes' cores (on device time every engine has its own core).
    /// Sequential's step includes the collectives' modelled cost, which no schedule hides.
    struct Bound: Encodable {
        let step_ms: Double
        let speedup: Double
        /// Link time of the busiest links per step (what there is to hide).
        let link_ms: Double
        /// The gradient all-reduce's modelled cost per step (`syncGradientsCost`), never hidden.
        let sync_ms: Double
        /// The nodes' cores (nil on device time: no host-core term).
        let cores: Int?
        /// The bound from the busiest rank's work in each MoE call: the median over
        /// sequential's steps of its step less, in every MoE call, the call's time
        /// beyond the most expert-GEMM and own-row work (packing, reductions) any rank
        /// did in it. Every transfer, the routing-plan exchange and every wait are
        /// hidden; the wait for the call's busiest rank is not, since routing puts that
        /// rank's GEMMs on every schedule's path. Nil without sequential's calls.
        let work_step_ms: Double?
        let work_speedup: Double?
    }

    struct JSON: Encodable {
        /// "device" or "wall": the clock of every time.
        let clock: String
        let link: LinkModel
        let calibration: Calibration
        /// How the link was calibrated, in words (`Calibration.explanation`).
        let link_calibration: String
        let schedules: [Row]
        let bound: Bound?
    }

    func run(on context: RankContext) throws {
        let world = context.world, device = context.device
        let groups = try ProcessGroups(world: world, layout: layout.layout(worldSize: world.size))
        var base = try config.map { try TrainConfig.load(from: $0) } ?? TrainConfig()
        if let coresPerRank { base.scheduleOptions.coresPerRank = coresPerRank }
        if runtime.timeOnly { base.routing = .quotas }
        try base.scheduleOptions.validate()
        func trainer(_ kind: ScheduleKind, link: LinkModel) throws -> Trainer {
            var config = base
            config.schedule = kind
            config.steps = max(config.steps, warmup + iterations + 3)
            return try Trainer(config: config, dataPath: nil, groups: groups, link: link, device: device, runDirectory: nil, resume: nil)
        }
        let (model, calibration, linkBytes) = try calibrate(base, world: world) { try trainer(.sequential, link: .native) }
        // Per step, each block's busiest links carry two passes, each a dispatch and a combine.
        let linkMS = linkBytes.reduce(0) { $0 + 2 * model.passTime(busiestLinkBytes: $1) } * 1e3
        let cores = device.clock.isPerRank ? nil : try world.coreCount()
        let trainers = try schedule.map { try trainer($0, link: model) }
        let syncMS = (trainers.first?.model.syncGradientsCost ?? 0) * 1e3
        let sequentialIndex = schedule.firstIndex(of: .sequential)
        let rounds = try interleavedRounds(trainers.count, warmup: warmup, rounds: iterations) { index in
            try world.barrier()
            let report = try trainers[index].step()
            return (report, slack: index == sequentialIndex ? try moeSlack(trainers[index], world: world) : nil)
        }
        let samples = rounds.map { $0.map(\.0) }
        // Sequential's step seconds less what its MoE calls could hide, per measured step.
        let tokens = Double(base.globalBatch * base.sequenceLength)
        let workSteps = sequentialIndex.map { index in
            rounds[index].compactMap { sample in sample.slack.map { tokens / sample.0.tokens_per_s - $0 } }
        }
        try ChromeTrace.export(trainers.flatMap(\.lastStepActivities), world: world, clock: device.clock, trace: trace, gantt: gantt,
                               title: "One training step per schedule, \(world.size) ranks, link \(model.name)")
        guard world.rank == 0 else { return }
        let (rows, bound) = summarize(samples, base, linkMS: linkMS, syncMS: syncMS, cores: cores, ranks: world.size,
                                      workStepSeconds: workSteps.map(median))
        print("comet-bench e2e: \(world.size) ranks, layout \(groups.layout), \(base.layers) blocks, C=\(base.modelWidth), "
            + "E=\(base.experts), top-k \(base.topK), batch \(base.globalBatch) x \(base.sequenceLength) tokens"
            + (runtime.timeOnly ? ", time-only (nothing computed)" : ""))
        print(device.clock.reportLine)
        print(EngineSplit.reportLine(schedule.map { ($0.rawValue, base.scheduleOptions.engines(for: $0)) }))
        let calibrated = calibration.explanation(try linkChoice)
        print("link: \(model)")
        print("link calibration: \(calibrated)")
        printTable(rows, bound: bound, cores: cores)
        let report = JSON(clock: device.clock.name, link: model, calibration: calibration, link_calibration: calibrated,
                          schedules: rows, bound: bound)
        if let json { try writeJSON(report, to: json) }
    }

    /// Each schedule's medians, and the bound any schedule has with sequential's work;
    /// `cores` nil on device time (CPU use is then per engine, one per rank of `ranks`).
    private func summarize(
        _ samples: [[Trainer.StepReport]], _ base: TrainConfig, linkMS: Double, syncMS: Double, cores: Int?, ranks: Int,
        workStepSeconds: Double?
    ) -> ([Row], Bound?) {
        let tokens = Double(base.globalBatch * base.sequenceLength)
        let medians = samples.map { reports in
            (step: median(reports.map { tokens / $0.tokens_per_s }), comm: median(reports.map(\.comm_ms)),
             gemm: median(reports.map(\.gemm_ms)), cpu: median(reports.compactMap(\.cpu_ms)))
        }
        let sequential = schedule.firstIndex(of: .sequential).map { medians[$0] }
        let rows = zip(schedule, medians).map { kind, m in
            Row(schedule: kind.rawValue, step_ms: m.step * 1e3, tokens_per_s: tokens / m.step,
                speedup: sequential.map { $0.step / m.step } ?? .nan, moe_comm_ms: m.comm, moe_gemm_ms: m.gemm,
                cpu_ms: m.cpu, cpu_use: m.cpu / (m.step * 1e3 * Double(cores ?? ranks)))
        }
        let bound = sequential.map { s in
            let stepMS = max(s.step * 1e3 - linkMS, linkMS + syncMS, cores.map { s.cpu / Double($0) } ?? 0)
            return Bound(step_ms: stepMS, speedup: s.step * 1e3 / stepMS, link_ms: linkMS, sync_ms: syncMS, cores: cores,
                         work_step_ms: workStepSeconds.map { $0 * 1e3 }, work_speedup: workStepSeconds.map { s.step / $0 })
        }
        return (rows, bound)
    }

    /// The table, the bound and each comet variant's share of it. `cores` nil (device
    /// time): the last column is the engines each rank kept busy, else the cores' use.
    private func printTable(_ rows: [Row], bound: Bound?, cores: Int?) {
        let use = cores.map { ("CPU use", "use: of \($0) cores") } ?? ("engines", "engines: busy per rank (CPU over ranks x step)")
        print("medians of \(iterations) steps after \(warmup) warm-up steps; CPU: host CPU of all ranks; \(use.1)")
        print("schedule      step ms   tokens/s  speedup  MoE comm ms  MoE GEMM ms   CPU ms  \(use.0)")
        for row in rows {
            let figure = cores == nil ? String(format: "%7.1f", row.cpu_use) : String(format: "%6.0f%%", 100 * row.cpu_use)
            print(padded(row.schedule, 12) + String(format: "  %7.1f  %9.0f  %6.2fx  %11.1f  %11.1f  %7.1f  %@",
                                                    row.step_ms, row.tokens_per_s, row.speedup, row.moe_comm_ms,
                                                    row.moe_gemm_ms, row.cpu_ms, figure))
        }
        guard let bound else { return }
        let cpuTerm = cores.map { "sequential's CPU on \($0) cores" } ?? "no host-core term on device time: each engine has its own core"
        print(String(format: "bound for any schedule with sequential's other work (the busiest links' %.1f ms per step all hidden; the gradient all-reduce's "
                        + "modelled %.1f ms never; %@): %.1f ms per step, %.2fx",
                     bound.link_ms, bound.sync_ms, cpuTerm, bound.step_ms, bound.speedup))
        printBoundShares(rows.map { ($0.schedule, $0.speedup) }, bound: bound.speedup)
        guard let workMS = bound.work_step_ms, let workSpeedup = bound.work_speedup else { return }
        print(String(format: "bound from the busiest rank's work in each MoE call (sequential's steps less what each of its MoE calls took "
                        + "beyond the most expert-GEMM and own-row work one rank did in it: transfers, plan exchange and waits all "
                        + "hidden, the routing's imbalance not): %.1f ms per step, %.2fx", workMS, workSpeedup))
        printBoundShares(rows.map { ($0.schedule, $0.speedup) }, bound: workSpeedup, name: "this bound")
    }

    /// Seconds of sequential's last step that a schedule could hide at most: over its
    /// MoE calls, each call's time (the longest any rank spent in it, first activity to
    /// last) beyond the most expert-GEMM and own-row work any rank did in it. In
    /// sequential a rank's GEMMs and its own-row work never overlap. Collective.
    private func moeSlack(_ trainer: Trainer, world: Communicator) throws -> Double {
        let calls = trainer.lastStepMoECalls
        var figures = calls.map { Timeline.busySeconds(.gemm, in: $0) + Timeline.busySeconds(.local, in: $0) }
            + calls.map { call in (call.map(\.end).max() ?? 0) - (call.map(\.start).min() ?? 0) }
        try world.allReduce(&figures, .max)
        return (0..<calls.count).reduce(0) { $0 + max(0, figures[calls.count + $1] - figures[$1]) }
    }

    /// The `--link` model, calibrated on sequential's training steps: the MoE GEMM
    /// time of a step's forward and of the whole step (slowest rank) against every
    /// block's busiest rank pair; also each block's bytes on the model's busiest link
    /// queue. Collective.
    private func calibrate(
        _ base: TrainConfig, world: Communicator, _ sequential: () throws -> Trainer
    ) throws -> (LinkModel, Calibration, linkBytes: [Int]) {
        let trainer = try sequential()
        var pairBytes: [Int64] = [], portBytes: [Int64] = []
        let calibration = try Calibration.measure(world, moeLayers: base.layers) {
            _ = try trainer.step()
            pairBytes = trainer.model.busiestLinkBytes(.perPeer).map { Int64($0) }
            portBytes = trainer.model.busiestLinkBytes(.perPort).map { Int64($0) }
            let moe = trainer.lastStepActivities.filter { !$0.phase.hasSuffix(" dense") }
            let forward = moe.filter { $0.phase.hasSuffix(" forward") }.map(\.activity)
            return Calibration.Sample(
                forwardGEMMSeconds: Timeline.busySeconds(.gemm, in: forward),
                passGEMMSeconds: Timeline.busySeconds(.gemm, in: moe.map(\.activity)),
                flops: moe.reduce(0) { $0 + $1.activity.flops }, busiestPairBytes: Int(pairBytes.max() ?? 0),
                busiestPortBytes: Int(portBytes.max() ?? 0))
        }
        let model = calibration.link(try linkChoice, device: runtime.device)
        var bytes = model.queues == .perPeer ? pairBytes : portBytes
        try world.allReduce(&bytes, .max)
        return (model, calibration, bytes.map { Int($0) })
    }
}
