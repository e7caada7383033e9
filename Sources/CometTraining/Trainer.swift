import CometCore
import CometKernels
import CometMPI
import CometMoE
import Foundation

/// One training run on this rank: data, model, optimizer and the run directory.
///
/// Rank r of W reads sequences r B/W ..< (r + 1) B/W of every step, so the global
/// batch B is the same whatever the number of ranks. Rank 0 writes the run
/// directory (when there is one): `config.json`, `metrics.jsonl` (a line per
/// step), `summary.json` and the checkpoint, each file either whole or absent.
public final class Trainer {
    public let config: TrainConfig
    public let data: any DataSource
    public let model: MoETransformer
    public let optimizer: AdamW
    public let groups: ProcessGroups
    /// The device this rank plays: its worker threads and the clock every step time is read on.
    public let device: Device
    public let runDirectory: URL?
    private let metrics: FileHandle?
    /// This rank's activities during the last step: dense layers, then every block's
    /// MoE forward and backward, under phase names "SCHEDULE dense|forward|backward".
    public private(set) var lastStepActivities: [(phase: String, activity: Activity)] = []
    /// This rank's activities in each MoE layer call of the last step: every block's
    /// forward, then every block's backward.
    public private(set) var lastStepMoECalls: [[Activity]] = []

    /// What one step measured, over the whole job. Times are on the run's clock
    /// (`clock`: the device's, or the host's wall clock), except `wall_ms` and `cpu_ms`.
    public struct StepReport: Codable, Sendable {
        public let step: Int
        public let loss: Double
        public let aux_loss: Double
        public let lr: Float
        public let grad_norm: Double
        /// The clock of the step's times: "device" or "wall" (nil in metrics written
        /// before it was recorded).
        public let clock: String?
        /// Milliseconds of the step (slowest rank) on the run's clock, and on the
        /// host's wall clock (nil in metrics written before they were recorded).
        public let step_ms: Double?
        public let wall_ms: Double?
        /// Global batch tokens over the step's time on the run's clock.
        public let tokens_per_s: Double
        /// Milliseconds of the step in MoE communication and expert GEMMs (slowest rank).
        public let comm_ms: Double
        public let gemm_ms: Double
        /// CPU milliseconds all ranks' processes (every thread) ran during the step,
        /// summed (nil in metrics written before it was recorded).
        public let cpu_ms: Double?
        /// Tokens routed to each expert over all blocks, all ranks.
        public let expert_load: [Int]
        public var eval_loss: Double?
    }

    /// The run's outcome, also written to `summary.json`: `seconds` and `tokens_per_s`
    /// on the run's `clock` ("device" or "wall"), `wall_seconds` and
    /// `wall_tokens_per_s` on the host's wall clock; each over the whole of `run`
    /// (steps, evaluations, checkpoints) as rank 0 saw it.
    public struct Summary: Codable, Sendable {
        public let final_train_loss: Double
        public let final_eval_loss: Double
        public let entropy_floor: Double?
        public let unigram_entropy: Double?
        public let eval_over_floor: Double?
        public let clock: String
        public let seconds: Double
        public let tokens_per_s: Double
        public let wall_seconds: Double
        public let wall_tokens_per_s: Double
        public let schedule: String
        public let layout: String
        public let ranks: Int
        public let steps: Int
    }

    /// Builds everything; `data` is a text file (byte-level) or nil for the built-in
    /// Markov language; the MoE layers' rows move on `link`, and every collective of
    /// the run (gradient all-reduces, loss reductions) costs what its data costs on it
    /// (`LinkModel.collectiveCost`); `runDirectory` nil writes no files; `resume` a run
    /// directory whose checkpoint to continue from. Collective.
    public init(config: TrainConfig, dataPath: String?, groups: ProcessGroups, link: LinkModel, device: Device,
                runDirectory: URL?, resume: URL?) throws {
        let groups = groups.withCost(link.collectiveCost)
        let world = groups.world
        try config.validate(ranks: world.size, expertParallel: groups.layout.expertParallel, tensorParallel: groups.layout.tensorParallel)
        self.config = config
        self.groups = groups
        self.device = device
        self.runDirectory = runDirectory
        data = try dataPath.map { try ByteText(path: $0, length: config.sequenceLength + 1) }
            ?? MarkovLanguage(sources: config.markovSources, dataTokens: config.markovTokens,
                              successors: config.markovSuccessors, seed: config.seed)
        model = try MoETransformer(config: config, vocabularySize: data.vocabularySize,
                                   sequences: config.sequencesPerRank(ranks: world.size), groups: groups, link: link,
                                   device: device)
        optimizer = AdamW(config: config.optimizer, parameterCount: model.parameters.count)
        if let resume { try Checkpoint.read(into: model, optimizer, from: resume) }
        let resumedAt = resume == nil ? nil : optimizer.step
        metrics = try Trainer.openRunDirectory(runDirectory, config: config, resumedAt: resumedAt, world: world)
    }

    /// Rank 0 creates `directory`, writes config.json there and opens metrics.jsonl:
    /// emptied, or when resuming from step `resumedAt`, kept up to that step (a run
    /// that was killed logged steps after its last checkpoint, which run again). Every
    /// rank learns whether that worked (`onRankZero`). Nil off rank 0 and without a
    /// directory. Collective when there is a directory.
    private static func openRunDirectory(_ directory: URL?, config: TrainConfig, resumedAt: Int?,
                                         world: Communicator) throws -> FileHandle? {
        guard let directory else { return nil }
        var metrics: FileHandle?
        try world.onRankZero {
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                try config.json().write(to: directory.appendingPathComponent("config.json"), options: .atomic)
                let url = directory.appendingPathComponent("metrics.jsonl")
                if let resumedAt, let logged = try? Data(contentsOf: url) {
                    try RunDirectory.metricsLines(logged, through: resumedAt).write(to: url, options: .atomic)
                } else {
                    _ = FileManager.default.createFile(atPath: url.path, contents: nil)  // opening it below reports failure
                }
                metrics = try FileHandle(forWritingTo: url)
                try metrics?.seekToEnd()
            } catch {
                throw InputError("cannot write the run directory \(directory.path): \(RunDirectory.fileProblem(error))")
            }
        }
        return metrics
    }

    /// Trains from the optimizer's step to `config.steps` (or to step `stop`, as if
    /// interrupted there), calling `progress` after every step on every rank. Collective.
    public func run(until stop: Int? = nil, _ progress: (StepReport) -> Void) throws -> Summary {
        let world = groups.world
        let t = config.sequenceLength
        let (start, hostStart) = (device.clock.now(), hostSeconds())
        var trained = 0
        var lastLoss = Double.nan, lastEval = Double.nan
        let last = min(stop ?? config.steps, config.steps)
        while optimizer.step < last {
            var report = try step()
            let isLast = optimizer.step == last
            if optimizer.step % config.evalEvery == 0 || isLast { report.eval_loss = try evaluate() }
            lastLoss = report.loss
            lastEval = report.eval_loss ?? lastEval
            try appendMetrics(report)
            if let runDirectory, optimizer.step % config.checkpointEvery == 0 || isLast {
                try Checkpoint.write(model, optimizer, config: config, to: runDirectory)
            }
            trained += 1
            progress(report)
        }
        if lastEval.isNaN { lastEval = try evaluate() }
        let (seconds, wall) = (device.clock.seconds(since: start), hostSeconds() - hostStart)
        let tokens = Double(trained * config.globalBatch * t)
        let floor = data.lossFloor(length: t + 1)
        let summary = Summary(
            final_train_loss: lastLoss, final_eval_loss: lastEval, entropy_floor: floor,
            unigram_entropy: data.contextFreeLoss(length: t + 1), eval_over_floor: floor.map { lastEval / $0 },
            clock: device.clock.name, seconds: seconds, tokens_per_s: tokens / max(seconds, 1e-9), wall_seconds: wall,
            wall_tokens_per_s: tokens / max(wall, 1e-9), schedule: config.schedule.rawValue, layout: groups.layout.description,
            ranks: world.size, steps: optimizer.step)
        if world.rank == 0, let runDirectory {
            try writeJSON(summary, to: runDirectory.appendingPathComponent("summary.json").path)
        }
        return summary
    }

    /// One training step (forward, backward, gradient sync, AdamW) on the optimizer's
    /// next step; the report has no evaluation. Collective.
    public func step() throws -> StepReport {
        let world = groups.world
        let (b, t, step) = (config.sequencesPerRank(ranks: world.size), config.sequenceLength, optimizer.step)
        let (stepStart, hostStart, cpuStart) = (device.clock.now(), hostSeconds(), processCPUSeconds())
        let tokens = data.sequences(step: step, first: world.rank * b, count: b, length: t + 1, evaluation: false)
        model.parameters.zeroGradients()
        let loss = try model.forward(tokens)
        let forwardTimes = moeTimes()
        let name = config.schedule.rawValue
        let forwardCalls = model.moe.map(\.timeline.all)
        var activities = forwardCalls.flatMap { call in call.map { (phase: "\(name) forward", activity: $0) } }
        try model.backward()
        let backwardTimes = moeTimes()
        let backwardCalls = model.moe.map(\.timeline.all)
        activities += backwardCalls.flatMap { call in call.map { (phase: "\(name) backward", activity: $0) } }
        lastStepMoECalls = forwardCalls + backwardCalls
        lastStepActivities = model.timeline.all.map { (phase: "\(name) dense", activity: $0) } + activities
        let norm = try model.syncGradients()
        let lr = config.optimizer.learningRate(step: step, totalSteps: config.steps)
        optimizer.update(model.parameters, learningRate: lr, gradientScale: optimizer.clipScale(globalNorm: norm))
        var totals = [loss.crossEntropy, loss.aux, processCPUSeconds() - cpuStart]
        try world.allReduce(&totals, .sum)
        var load = loss.expertLoad.map { Int64($0) }
        try world.allReduce(&load, .sum)
        var times = [forwardTimes.comm + backwardTimes.comm, forwardTimes.gemm + backwardTimes.gemm,
                     device.clock.seconds(since: stepStart), hostSeconds() - hostStart]
        try world.allReduce(&times, .max)
        return StepReport(
            step: optimizer.step, loss: totals[0] / Double(world.size), aux_loss: totals[1] / Double(world.size), lr: lr,
            grad_norm: norm, clock: device.clock.name, step_ms: times[2] * 1e3, wall_ms: times[3] * 1e3,
            tokens_per_s: Double(config.globalBatch * t) / times[2], comm_ms: times[0] * 1e3, gemm_ms: times[1] * 1e3,
            cpu_ms: totals[2] * 1e3, expert_load: load.map { Int($0) }, eval_loss: nil)
    }

    /// Mean cross-entropy over the held-out sequences (the same ones every time). Collective.
    public func evaluate() throws -> Double {
        let world = groups.world
        let (b, t) = (config.sequencesPerRank(ranks: world.size), config.sequenceLength)
        let perRank = config.evalSequences / world.size
        var total = 0.0
        var chunks = 0
        for first in stride(from: 0, to: perRank, by: b) {  // perRank is a multiple of b (see TrainConfig.validate)
            let tokens = data.sequences(step: 0, first: world.rank * perRank + first, count: b, length: t + 1, evaluation: true)
            total += try model.forward(tokens).crossEntropy
            chunks += 1
        }
        var mean = [total / Double(max(chunks, 1))]
        try world.allReduce(&mean, .sum)
        return mean[0] / Double(world.size)
    }

    /// Communication and expert-GEMM seconds of every block's last MoE call on this rank.
    private func moeTimes() -> (comm: Double, gemm: Double) {
        model.moe.reduce((0, 0)) { ($0.0 + $1.timeline.busySeconds(.comm), $0.1 + $1.timeline.busySeconds(.gemm)) }
    }

    private func appendMetrics(_ report: StepReport) throws {
        guard let metrics else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = try encoder.encode(report)
        line.append(0x0A)
        try metrics.write(contentsOf: line)
    }
}
