import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import CometMoE
import CometShim
import CometTelemetry
import CometTraining
import Foundation

/// `mpirun -n 8 comet-train`: trains the toy MoE transformer on the embedded default.
struct CometTrain: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet-train",
        abstract: "Train a toy MoE transformer with one MPI rank per emulated GPU.",
        discussion: """
            With no flags, trains on a built-in synthetic language whose entropy floor is known exactly, \
            and leaves a run directory with config.json, metrics.jsonl, summary.json and a safetensors checkpoint.
            Step times and tokens/s are on --clock's time (device by default, whatever the host's cores); \
            metrics.jsonl (wall_ms) and summary.json (wall_seconds) also give the host's wall time.
            """)

    @Option(help: "A JSON configuration (see --print-config); keys left out keep their defaults.") var config: String?
    @Flag(help: "Print the effective configuration as JSON and exit.") var printConfig = false
    @Option(help: "Train byte-level on this text file instead of the built-in language.") var data: String?
    @Option(help: "The run directory (default: runs/<timestamp>).") var out: String?
    @Option(help: "Continue from the checkpoint in this run directory.") var resume: String?
    @Option(help: "Training steps (overrides the configuration).") var steps: Int?
    @Option(help: "Stop after this step, with a checkpoint, as if interrupted (continue with --resume).") var stopAfter: Int?
    @Option(help: "sequential, chunked, comet or comet-rows (overrides the configuration).") var schedule: ScheduleKind?
    @Option(help: ArgumentHelp(
        "Engines per rank, the emulated device's cores (overrides the configuration's scheduleOptions.coresPerRank).",
        discussion: "comet divides them into scheduleOptions.commThreads communicators and the rest GEMM engines; "
            + "sequential and chunked into one communicator and the rest GEMM engines."))
    var coresPerRank: Int?
    @Option(help: ArgumentHelp(
        "comet's threads, tiles and blocks from this tuning table (comet-bench tune), or 'model' for the cost model.",
        discussion: "Without it comet uses the configuration's scheduleOptions. The choice and its reason are printed."))
    var tuning: String?
    @Flag(help: "Run the runtime self-check instead of training.") var selfCheck = false
    @Option(help: "Write the last step as a Chrome trace (Perfetto, chrome://tracing).") var trace: String?
    @Option(help: "Write the last step as an SVG Gantt timeline.") var gantt: String?
    @Option(help: """
        bar, lines or auto (a bar when standard output is a terminal). Under mpirun every rank's output \
        looks like a terminal, so pass lines when it goes to a file (scripts/train does).
        """)
    var progress: ProgressStyle = .auto
    @OptionGroup var layout: LayoutOptions
    @OptionGroup var runtime: RuntimeOptions

    /// With a modelled GPU (--device) rows move on the GPUs' interconnect, else on the native link.
    var linkIsEmulated: Bool { runtime.device.gpu != nil }

    /// The link the MoE layers' rows move on.
    var link: LinkModel { runtime.device.gpu?.link ?? .native }

    func run(on context: RankContext) throws {
        let world = context.world
        let groups = try ProcessGroups(world: world, layout: layout.layout(worldSize: world.size))
        if selfCheck { return try runSelfCheck(context, groups) }
        if let resume { try RunDirectory.checkResumable(resume, label: "--resume \(resume)") }
        // A resumed run continues with its own configuration unless given another.
        let configPath = self.config ?? resume.map { URL(fileURLWithPath: $0).appendingPathComponent("config.json").path }
        var config = try configPath.map { try TrainConfig.load(from: $0) } ?? TrainConfig()
        if let steps { config.steps = steps }
        if let schedule { config.schedule = schedule }
        if let coresPerRank { config.scheduleOptions.coresPerRank = coresPerRank }
        if printConfig {
            if world.rank == 0 { print(String(decoding: try config.json(), as: UTF8.self)) }
            return
        }
        let directoryPath = out ?? resume ?? "runs/\(timestamp(world))"
        // Every rank checks before any writes, so a path that cannot hold the run is one message.
        let label = out.map { "--out \($0)" } ?? resume.map { "--resume \($0)" } ?? "the run directory \(directoryPath)"
        try RunDirectory.checkWritable(directoryPath, label: label)
        try config.validate(ranks: world.size, expertParallel: groups.layout.expertParallel,
                            tensorParallel: groups.layout.tensorParallel)  // before --tuning divides the engines
        if tuning != nil, config.schedule != .comet {
            throw InputError("--tuning chooses the split of the paper's comet; it needs --schedule comet, not \(config.schedule.rawValue)")
        }
        if let tuning {
            let tp = groups.layout.tensorParallel
            let moe = config.moe(tokensPerRank: config.sequencesPerRank(ranks: world.size) * config.sequenceLength)
            let (split, reason) = try TunedSplit.resolve(config: moe, world: groups.moe, tensorParallel: tp, link: link,
                                                         clock: context.device.clock,
                                                         coresPerRank: config.scheduleOptions.coresPerRank,
                                                         tablePath: tuning == "model" ? nil : tuning)
            config.scheduleOptions = split.applied(to: config.scheduleOptions)
            if world.rank == 0 { print("comet: \(split); \(reason)") }
        }
        let directory = URL(fileURLWithPath: directoryPath)
        let trainer = try Trainer(config: config, dataPath: data, groups: groups, link: link, device: context.device,
                                  runDirectory: directory, resume: resume.map { URL(fileURLWithPath: $0) })
        let progress = Progress(total: config.steps, enabled: world.rank == 0, style: self.progress)
        if world.rank == 0 {
            print("comet-train: \(world.size) ranks, layout \(groups.layout), schedule \(config.schedule.rawValue), "
                + EngineSplit.reportLine([(config.schedule.rawValue, config.scheduleOptions.engines(for: config.schedule))]) + ", "
                + "\(context.device.clock.timeName)\(runtime.device.gpu.map { " of \(world.size) modelled \($0.name.uppercased())s" } ?? ""); "
                + "\(trainer.model.parameters.count) parameters on rank 0; run directory \(directory.path)")
            if let floor = trainer.data.lossFloor(length: config.sequenceLength + 1),
               let unigram = trainer.data.contextFreeLoss(length: config.sequenceLength + 1) {
                print(String(format: "data: built-in Markov language, entropy floor %.4f nats/token, unigram entropy %.4f", floor, unigram))
            }
        }
        let summary = try trainer.run(until: stopAfter) { progress.update($0) }
        progress.finish()
        if world.rank == 0 { try writePlots(directory, summary: summary) }
        try ChromeTrace.export(trainer.lastStepActivities, world: world, clock: context.device.clock, trace: trace, gantt: gantt,
                               title: "The last training step, \(world.size) ranks, schedule \(config.schedule.rawValue)")
        if world.rank == 0 { print(doneLine(summary, clock: context.device.clock)) }
    }

    /// "done: train loss ..., N tokens/s and S s of device time (W s on this host)"
    /// (S in ms below a second); on wall time the two are one.
    private func doneLine(_ summary: Trainer.Summary, clock: any Clock) -> String {
        var line = String(format: "done: train loss %.4f, eval loss %.4f", summary.final_train_loss, summary.final_eval_loss)
        if let floor = summary.entropy_floor { line += String(format: " (floor %.4f, %+.1f%%)", floor, 100 * (summary.final_eval_loss / floor - 1)) }
        // A modelled GPU trains the toy model in milliseconds: keep the digits.
        let time = summary.seconds < 1 ? String(format: "%.1f ms", summary.seconds * 1e3) : String(format: "%.1f s", summary.seconds)
        line += String(format: ", %.0f tokens/s and %@ of %@", summary.tokens_per_s, time, clock.timeName)
        if clock.isPerRank { line += String(format: " (%.1f s on this host)", summary.wall_seconds) }
        return line
    }

    /// loss.svg (train and eval loss with the entropy floor) and expert-load.svg (the
    /// share of tokens each expert got, step by step), from the whole metrics.jsonl.
    private func writePlots(_ directory: URL, summary: Trainer.Summary) throws {
        let lines = try String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let reports = try lines.map { try JSONDecoder().decode(Trainer.StepReport.self, from: Data($0.utf8)) }
        let train = Plots.Series(name: "train loss", points: reports.map { (Double($0.step), $0.loss) }, color: "#4c72b0")
        let eval = Plots.Series(name: "eval loss", points: reports.compactMap { r in r.eval_loss.map { (Double(r.step), $0) } },
                                color: "#dd8452")
        var levels: [Plots.Level] = []
        if let floor = summary.entropy_floor { levels.append(Plots.Level(name: "entropy floor", y: floor, color: "#2ca02c")) }
        if let unigram = summary.unigram_entropy { levels.append(Plots.Level(name: "unigram entropy", y: unigram, color: "#999999")) }
        let loss = Plots.lineChart(title: "Training loss (\(summary.schedule), \(summary.layout))", xLabel: "step",
                                   yLabel: "cross-entropy, nats per token", series: [train, eval], levels: levels)
        let experts = reports.first?.expert_load.count ?? 0
        let shares = (0..<experts).map { expert in
            reports.map { Double($0.expert_load[expert]) / Double(max($0.expert_load.reduce(0, +), 1)) * 100 }
        }
        let load = Plots.heatmap(title: "Share of routed tokens per expert, % (all blocks)", xLabel: "step", yLabel: "expert",
                                 rowNames: (0..<experts).map { "\($0)" }, values: shares)
        try save(Data(loss.utf8), to: directory.appendingPathComponent("loss.svg").path)
        try save(Data(load.utf8), to: directory.appendingPathComponent("expert-load.svg").path)
    }

    /// A name for the run directory that every rank agrees on (rank 0's clock).
    private func timestamp(_ world: Communicator) -> String {
        var seconds = [Int64(Date().timeIntervalSince1970)]
        try? world.broadcast(&seconds, root: 0)
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds[0])))
    }

    private func runSelfCheck(_ context: RankContext, _ groups: ProcessGroups) throws {
        let world = context.world
        let nodes = try world.nodeCount()
        let native = try SelfCheck.windowRoundTrip(on: world, forcePutGet: false)
        let putGet = try SelfCheck.windowRoundTrip(on: world, forcePutGet: true)
        let gflops = try SelfCheck.onRankZeroAlone(world) { OpenBLAS.measureGFLOPs(m: 512, n: 512, k: 512) }
        guard context.blas.check.passed else {
            throw InputError("the BLAS kernel failed its check: \(context.blas.summary)")
        }
        if world.rank == 0 {
            print("""
            comet-train: runtime self-check
              ranks:  \(world.size) on \(nodes) node(s), layout \(groups.layout), \(MPIRuntime.libraryVersion), MPI_THREAD_MULTIPLE
              groups: MoE \(groups.moe.size) ranks (expert \(groups.expert.size) x tensor \(groups.tensor.size)), data \(groups.data.size)
              window: round trip ok on \(native) and on \(putGet)
              BLAS:   \(context.blas.summary)
                      one BLAS thread per calling thread; \(String(format: "%.1f", gflops)) GFLOP/s single-thread at 512x512x512
            self-check passed
            """)
        }
    }
}

enum ProgressStyle: String, ExpressibleByArgument {
    case auto, bar, lines
}

/// Rank 0's view of training: a progress bar on a terminal, plain lines otherwise.
final class Progress {
    let total: Int
    let enabled: Bool
    let terminal: Bool
    let start = hostSeconds()

    init(total: Int, enabled: Bool, style: ProgressStyle) {
        self.total = total
        self.enabled = enabled
        terminal = style == .bar || (style == .auto && isatty(STDOUT_FILENO) != 0)
    }

    func update(_ report: Trainer.StepReport) {
        guard enabled else { return }
        let elapsed = hostSeconds() - start
        let eta = Double(total - report.step) * elapsed / Double(max(report.step, 1))
        if terminal {
            let width = 30, filled = width * report.step / max(total, 1)
            let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
            print(String(format: "\r[%@] step %d/%d  loss %.4f  %.0f tok/s  ETA %.0f s ", bar, report.step, total, report.loss,
                         report.tokens_per_s, eta), terminator: "")
            comet_flush_all()
            if let eval = report.eval_loss { print(String(format: "\n  eval loss %.4f", eval)) }
        } else if report.step == 1 || report.step % max(1, total / 20) == 0 || report.eval_loss != nil {
            var line = String(format: "step %d/%d  loss %.4f  aux %.4f  lr %.2e  %.0f tok/s", report.step, total, report.loss,
                              report.aux_loss, report.lr, report.tokens_per_s)
            if let eval = report.eval_loss { line += String(format: "  eval %.4f", eval) }
            print(line)
        }
    }

    func finish() {
        if enabled && terminal { print("") }
    }
}

Launch.main(CometTrain.self)
