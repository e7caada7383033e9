import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import CometMoE
import CometTelemetry
import Foundation

/// One MoE layer, forward and backward, under each schedule on the same tokens
/// and weights, interleaved, side by side in one run.
struct LayerBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "layer",
        abstract: "Time the MoE layer under the sequential, chunked, comet and comet-rows schedules in one run.",
        discussion: "The link (--link) is calibrated in this run on sequential; the report says how. Times, the calibration and the bound are on --clock's time; the single-thread rate is the host's.")

    @OptionGroup var options: LayerBenchOptions
    @Option(help: ArgumentHelp(
        "EP x TP layouts to run one after another: all, or a list such as 8x1,4x2 (default: --tp's).",
        discussion: "all: every split of the ranks whose EP divides E and whose TP divides K."))
    var layouts: String?
    @Option(help: "Also write the figures to this JSON file (an array, one report per layout, with --layouts).") var json: String?
    @Option(help: "Write the last iteration of every schedule as a Chrome trace (Perfetto, chrome://tracing).") var trace: String?
    @Option(help: "Write the last iteration of every schedule as an SVG Gantt timeline.") var gantt: String?
    @OptionGroup var runtime: RuntimeOptions

    var linkIsEmulated: Bool { (try? options.setup.linkChoice(on: runtime.device)) != .native }
    var runsTimeOnly: Bool { true }

    func validate() throws {
        _ = try options.setup.linkChoice(on: runtime.device)
        if layouts != nil, trace != nil || gantt != nil {
            throw ValidationError("--trace and --gantt show one layout: choose it with --tp instead of --layouts")
        }
    }

    func run(on context: RankContext) throws {
        let world = context.world, config = options.setup.moe.config, device = context.device
        guard let layouts else {
            let linkName = try options.setup.linkChoice(on: runtime.device).rawValue
            let (report, activities) = try options.benchmark(config, world: world, tensorParallel: options.setup.tp, device: device,
                                                             emulated: runtime.device, blas: context.blas.summary)
            try ChromeTrace.export(activities, world: world, clock: device.clock, trace: trace, gantt: gantt,
                                   title: "One MoE layer, forward + backward, \(world.size) ranks "
                                       + "(EP=\(world.size / options.setup.tp) x TP=\(options.setup.tp)), link \(linkName)")
            guard let report else { return }
            report.print()
            if let json { try writeJSON(report.json, to: json) }
            return
        }
        var reports: [LayerReport] = []
        for tp in try layoutTensorParallelSizes(layouts, ranks: world.size, config: config) {
            let (report, _) = try options.benchmark(config, world: world, tensorParallel: tp, device: device, emulated: runtime.device,
                                                    blas: context.blas.summary)
            if let report {
                report.print()
                Swift.print()
                reports.append(report)
            }
        }
        guard world.rank == 0 else { return }
        LayerReport.printLayoutSummary(reports)
        if let json { try writeJSON(reports.map(\.json), to: json) }
    }
}

/// The TP of each layout `--layouts` names, in order; `all`: every TP that divides
/// the ranks and K and leaves an EP that divides E, EP largest first.
func layoutTensorParallelSizes(_ list: String, ranks: Int, config: MoEConfig) throws -> [Int] {
    if list == "all" {
        return (1...ranks).filter { ranks % $0 == 0 && config.hiddenWidth % $0 == 0 && config.experts % (ranks / $0) == 0 }
    }
    return try list.split(separator: ",").map { item in
        let sizes = item.split(separator: "x").compactMap { Int($0) }
        guard sizes.count == 2, sizes[0] >= 1, sizes[1] >= 1, sizes[0] * sizes[1] == ranks else {
            throw InputError("--layouts takes all or EPxTP items whose product is the \(ranks) ranks, such as 8x1,4x2; got \(item)")
        }
        return sizes[1]
    }
}

/// The layer benchmark's settings, shared by `layer` and `sweep`.
struct LayerBenchOptions: ParsableArguments {
    @Option(help: "Schedules to run (repeatable; default all four).") var schedule: [ScheduleKind] = ScheduleKind.allCases
    @Option(help: "Chunk counts for the chunked schedule, comma-separated.") var chunks = "2,4,8"
    @Option(help: ArgumentHelp(
        "Also run comet with the workload split adaptive assignment chooses: from this tuning table (comet-bench tune), "
            + "or 'model' for the cost model alone.",
        discussion: "A table without this shape, layout, link, clock, --cores-per-rank and machine falls back to the cost model; "
            + "the choice and its reason are printed."))
    var tuning: String?
    @OptionGroup var setup: BenchSetup

    func validate() throws {
        guard !chunkCounts.isEmpty, chunkCounts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--chunks takes positive whole numbers separated by commas, e.g. 2,4,8")
        }
    }

    var chunkCounts: [Int] { chunks.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    /// One schedule as measured: a kind with its options, as a layer.
    struct Variant {
        let label: String
        let kind: ScheduleKind
        let layer: MoELayer
    }

    /// Runs every schedule on `config` with each expert's K sharded over
    /// `tensorParallel` ranks, interleaved, on the emulated device `emulated`; rank 0
    /// gets the report. Also returns this rank's activities in every schedule's last
    /// iteration. Collective.
    func benchmark(
        _ config: MoEConfig, world: Communicator, tensorParallel: Int, device: Device, emulated: DeviceChoice, blas: String
    ) throws -> (report: LayerReport?, activities: [(phase: String, activity: Activity)]) {
        guard world.size % tensorParallel == 0 else { throw InputError("--tp \(tensorParallel) must divide the \(world.size) ranks") }
        try config.validate(expertParallel: world.size / tensorParallel, tensorParallel: tensorParallel)
        let inputs = setup.inputs(config, world: world)
        let (link, calibration) = try setup.linkModel(config, world: world, tensorParallel: tensorParallel, inputs: inputs,
                                                      device: device, emulated: emulated)
        let variants = try makeVariants(config, world: world, tensorParallel: tensorParallel, link: link, device: device)
        let samples = try interleavedRounds(variants.count, warmup: setup.warmup, rounds: setup.iterations) { index in
            try Self.measure(variants[index].layer, world, inputs, rateOnClock: emulated.gpu != nil)
        }
        let tracing = try variants.first { $0.kind == .comet }.map { try tracingOverhead($0.layer, world, inputs) }
        let activities = zip(variants, samples).flatMap { variant, runs in
            (runs.last?.activities ?? []).map { (phase: "\(variant.label) \($0.phase)", activity: $0.activity) }
        }
        let tilings = variants.map(\.layer.schedule.tiling), engines = variants.map(\.layer.schedule.engines)
        for variant in variants { try variant.layer.release() }
        let rss = try world.allReduce(Int64(peakResidentKiB()), .max)
        let tileRows = min(tilings.compactMap(\.tileRows).first ?? config.tokensPerRank, config.tokensPerRank)
        // A GPU's GEMM rates are on its clock, against its peak; the host's per thread,
        // against one thread's rate at the tile shape, best of three as in `comet-bench gemm`.
        let tile = try emulated.gpu.map { $0.peakFLOPs / 1e9 } ?? SelfCheck.onRankZeroAlone(world) {
            (0..<3).map { _ in
                OpenBLAS.measureGFLOPs(m: tileRows, n: config.activation.width(hidden: config.hiddenWidth / tensorParallel),
                                       k: config.modelWidth, seconds: 0.2)
            }.max()!
        }
        guard world.rank == 0 else { return (nil, activities) }
        let report = LayerReport(
            variants: variants.map(\.label), tilings: tilings, engines: engines, samples: samples, config: config, options: setup.flags.options(chunks: 1),
            ranks: world.size, tensorParallel: tensorParallel, clock: device.clock, link: link, calibration: calibration,
            linkCalibration: calibration.explanation(try setup.linkChoice(on: emulated)), peakRSSKiB: Int(rss), blas: blas,
            tileGFLOPs: tile, tileRows: tileRows, gpu: emulated.gpu, tracing: tracing)
        return (report, activities)
    }

    /// Every `--schedule` (chunked at each `--chunks` count), and comet with the tuned
    /// split if `--tuning` asks for it, on `link`. Collective.
    private func makeVariants(
        _ config: MoEConfig, world: Communicator, tensorParallel: Int, link: LinkModel, device: Device
    ) throws -> [Variant] {
        var variants: [Variant] = []
        for kind in schedule {
            for d in kind == .chunked ? chunkCounts : [1] {
                let layer = try setup.layer(kind, setup.flags.options(chunks: d), config, world: world, tensorParallel: tensorParallel,
                                            link: link, device: device)
                variants.append(Variant(label: kind == .chunked ? "chunked d=\(d)" : kind.rawValue, kind: kind, layer: layer))
            }
        }
        if let tuning {
            let (split, reason) = try TunedSplit.resolve(config: config, world: world, tensorParallel: tensorParallel, link: link,
                                                         clock: device.clock, coresPerRank: setup.flags.coresPerRank,
                                                         tablePath: tuning == "model" ? nil : tuning)
            if world.rank == 0 { print("comet tuned: \(split); \(reason)") }
            let layer = try setup.layer(.comet, split.applied(to: setup.flags.options(chunks: 1)), config, world: world,
                                        tensorParallel: tensorParallel, link: link, device: device)
            variants.append(Variant(label: "comet tuned", kind: .comet, layer: layer))
        }
        return variants
    }

    /// What recording the timeline (the trace) costs comet: traced and untraced runs, interleaved.
    private func tracingOverhead(_ comet: MoELayer, _ world: Communicator, _ inputs: LayerInputs) throws -> LayerReport.TracingOverhead {
        var traced: [Double] = [], untraced: [Double] = []
        for _ in 0..<setup.iterations {
            traced.append(try setup.timeForwardBackward(comet, world, inputs))
            comet.timeline.isRecording = false
            untraced.append(try setup.timeForwardBackward(comet, world, inputs))
            comet.timeline.isRecording = true
        }
        return LayerReport.TracingOverhead(traced_ms: median(traced) * 1e3, untraced_ms: median(untraced) * 1e3)
    }

    /// One forward and backward of one schedule, each timed between barriers; comm
    /// and gemm are of both passes, forwardComm and forwardGEMM of the forward alone.
    struct Sample {
        let forward: Double, backward: Double, comm: Double, gemm: Double, forwardComm: Double, forwardGEMM: Double
        let gemmGFLOPs: Double
        /// Comet's forward and backward could take no less in its structure, the worst
        /// rank's (`cometPassBound`); nil for the other schedules.
        let cometBound: (forward: Double, backward: Double)?
        /// Every rank's y, dx and expert gradients, hashed (`outputDigest`).
        let digest: UInt64
        /// This rank's activities, forward then backward.
        let activities: [(phase: String, activity: Activity)]
    }

    /// One forward and backward of `layer`; its GEMM rate is FLOPs over their time on
    /// the clock when `rateOnClock` (a modelled GPU), else over their CPU time.
    static func measure(_ layer: MoELayer, _ world: Communicator, _ inputs: LayerInputs, rateOnClock: Bool) throws -> Sample {
        let rate = { rateOnClock ? layer.timeline.gemmGFLOPsOnClock : layer.timeline.gemmGFLOPsPerThread }
        let clock = layer.timeline.clock
        layer.zeroGradients()
        try world.barrier()
        var start = clock.now()
        try layer.forward(inputs.x.view, into: inputs.y.view)
        try world.barrier()
        let forward = clock.seconds(since: start)
        let (forwardComm, forwardGEMM) = (layer.timeline.busySeconds(.comm), layer.timeline.busySeconds(.gemm))
        let forwardRate = rate()
        let forwardActivities = layer.timeline.all
        let forwardStart = start
        start = clock.now()
        try layer.backward(inputs.dy.view, auxLossGradient: 0.01, into: inputs.dx.view)
        try world.barrier()
        let backward = clock.seconds(since: start)
        var figures = [forwardComm + layer.timeline.busySeconds(.comm), forwardGEMM + layer.timeline.busySeconds(.gemm), forwardComm,
                       forwardGEMM]
        let isComet = layer.schedule.name == ScheduleKind.comet.rawValue
        if isComet {
            figures += [cometPassBound(forwardActivities, start: forwardStart, link: layer.link.model, rank: layer.group.rank),
                        cometPassBound(layer.timeline.all, start: start, link: layer.link.model, rank: layer.group.rank)]
        }
        try world.allReduce(&figures, .max)
        let meanRate = try world.allReduce((forwardRate + rate()) / 2, .sum) / Double(world.size)
        let activities = forwardActivities.map { (phase: "forward", activity: $0) }
            + layer.timeline.all.map { (phase: "backward", activity: $0) }
        return Sample(forward: try world.allReduce(forward, .max), backward: try world.allReduce(backward, .max),
                      comm: figures[0], gemm: figures[1], forwardComm: figures[2], forwardGEMM: figures[3], gemmGFLOPs: meanRate,
                      cometBound: isComet ? (figures[4], figures[5]) : nil,
                      digest: try outputDigest([inputs.y.view, inputs.dx.view] + layer.experts.upGradient + layer.experts.downGradient, world),
                      activities: activities)
    }
}

/// FNV-1a over the bits of every rank's `matrices`, combined in rank order: equal
/// digests mean bit-identical results (0 in a time-only run, which has none). Collective.
func outputDigest(_ matrices: [MatrixView], _ world: Communicator) throws -> UInt64 {
    if ModelledKernels.isTimeOnly { return 0 }
    func fnv(_ hash: inout UInt64, _ word: UInt64) {
        hash ^= word
        hash = hash &* 0x100_0000_01b3
    }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for matrix in matrices {
        for row in 0..<matrix.rows {
            for column in 0..<matrix.columns { fnv(&hash, UInt64(matrix.base[row * matrix.rowStride + column].bitPattern)) }
        }
    }
    return try world.allGather([hash]).reduce(0xcbf2_9ce4_8422_2325) { combined, rank in
        var combined = combined
        fnv(&combined, rank)
        return combined
    }
}

/// Peak resident memory of this process, KiB.
func peakResidentKiB() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss
}
