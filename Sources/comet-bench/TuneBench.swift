import ArgumentParser
import CometCore
import CometDevices
import CometKernels
import CometLaunch
import CometMPI
import CometMoE
import CometTelemetry
import Foundation

/// Adaptive workload assignment's profiles: comet under every candidate split of
/// the rank's engines, tiles and blocks, interleaved, for each layout; the best goes
/// into the tuning table, keyed by shape, layout, link, clock, engines per rank and machine.
struct TuneBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Profile comet's engine split and tile sizes and store the best per shape, layout, link, clock and budget.",
        discussion: """
            Candidates: every split of --cores-per-rank N engines into C communicators and N - C GEMM engines \
            (C = 1 ... N - 1), layer0 tiles of 32 to 256 rows, layer1 blocks of 64 to 256 columns. After the profile, the \
            chosen split and the best and default fixed splits run again, interleaved, as a check. Later runs read the \
            table with --tuning. Profiles are timed on --clock's time, and the table's key records the clock and N: an \
            entry is read only by runs on the same clock with the same engines per rank.
            """)

    @OptionGroup var setup: BenchSetup
    @Option(help: "EP x TP layouts to tune: all, or a list such as 8x1,4x2 (default: --tp's).") var layouts: String?
    @Option(help: "The tuning table to add to (created if missing; entries with the same key are replaced).")
    var table = "tuning.json"
    @OptionGroup var runtime: RuntimeOptions

    var linkIsEmulated: Bool { (try? setup.linkChoice(on: runtime.device)) != .native }
    var runsTimeOnly: Bool { true }

    func validate() throws { _ = try setup.linkChoice(on: runtime.device) }

    func run(on context: RankContext) throws {
        let world = context.world, config = setup.moe.config, device = context.device
        try setup.flags.options(chunks: 1).validate()
        var tuned = try world.rank == 0 ? TuningTable.load(table) : TuningTable()
        let sizes = try layouts.map { try layoutTensorParallelSizes($0, ranks: world.size, config: config) } ?? [setup.tp]
        if world.rank == 0 { print(device.clock.reportLine) }
        for tp in sizes {
            guard let entry = try profile(config, world: world, tensorParallel: tp, device: device, blasCore: OpenBLAS.coreName) else {
                continue
            }
            tuned.record(entry)  // only rank 0 gets an entry
            try save(try tuned.json(), to: table)  // after each layout, so an interrupted run keeps what it measured
        }
        if world.rank == 0 { print("wrote \(table)") }
    }

    /// Every candidate on one layout, interleaved; rank 0 gets the entry. Collective.
    private func profile(
        _ config: MoEConfig, world: Communicator, tensorParallel tp: Int, device: Device, blasCore: String
    ) throws -> TuningEntry? {
        guard world.size % tp == 0 else { throw InputError("--tp \(tp) must divide the \(world.size) ranks") }
        try config.validate(expertParallel: world.size / tp, tensorParallel: tp)
        let inputs = setup.inputs(config, world: world)
        let (link, calibration) = try setup.linkModel(config, world: world, tensorParallel: tp, inputs: inputs, device: device,
                                                      emulated: runtime.device)
        let budget = setup.flags.coresPerRank
        let gpu = runtime.device.gpu != nil
        let candidates = WorkloadSplit.candidates(coresPerRank: budget, onGPU: gpu)
        let layers = try candidates.map { split in
            let layer = try setup.layer(.comet, split.applied(to: setup.flags.options(chunks: 1)), config, world: world,
                                        tensorParallel: tp, link: link, device: device)
            layer.timeline.isRecording = false
            return layer
        }
        let key = TuningKey(config: config, ranks: world.size, tensorParallel: tp, link: link.name, clock: device.clock.timingName,
                            coresPerRank: budget, machine: TuningKey.thisMachine(blasCore: blasCore))
        if world.rank == 0 {
            print("tuning \(key) (\(link)): \(candidates.count) candidates x \(setup.iterations) iterations")
            print("  link calibration: \(calibration.explanation(try setup.linkChoice(on: runtime.device)))")
        }
        let times = try interleaved(layers, world: world, inputs)
        let entry = TuningEntry(key: key, measurements: zip(candidates, times).map { .init(split: $0, milliseconds: 1e3 * $1) })

        // The check: the chosen split against the best and the default fixed splits, measured afresh.
        let fixedDefault = WorkloadSplit.fixedDefault(coresPerRank: budget, commSMs: gpu ? GPUModel.defaultCommSMs : nil)
        let best = candidates.firstIndex(of: entry.best)!, fixed = candidates.firstIndex(of: fixedDefault)
        let ranked = candidates.indices.sorted { times[$0] < times[$1] }
        var rivals = Array(ranked.dropFirst().prefix(3))
        if let fixed, fixed != best, !rivals.contains(fixed) { rivals.append(fixed) }
        let check = try interleaved([layers[best]] + rivals.map { layers[$0] }, world: world, inputs, iterations: 2 * setup.iterations)
        for layer in layers { try layer.release() }
        guard world.rank == 0 else { return nil }
        for index in ranked.prefix(5) {
            print(String(format: "  %8.1f ms  %@", 1e3 * times[index], candidates[index].description))
        }
        let bestFixed = zip(rivals, check.dropFirst()).min { $0.1 < $1.1 }!
        print(String(format: "  chosen: %@\n  check: chosen %.1f ms, best other fixed split %.1f ms (%@), %+.1f%%",
                     entry.best.description, 1e3 * check[0], 1e3 * bestFixed.1, candidates[bestFixed.0].description,
                     100 * (check[0] / bestFixed.1 - 1)))
        if fixed == best {
            print("  the chosen split is the default fixed split")
        } else if let fixed, let position = rivals.firstIndex(of: fixed) {
            print(String(format: "  the chosen split against the default fixed split (%@): %.2fx as fast",
                         fixedDefault.description, check[position + 1] / check[0]))
        }
        return entry
    }

    /// Median forward + backward seconds of each layer over `iterations` (default
    /// --iterations) after the warm-up, interleaved.
    private func interleaved(_ layers: [MoELayer], world: Communicator, _ inputs: LayerInputs, iterations: Int? = nil) throws -> [Double] {
        try interleavedRounds(layers.count, warmup: setup.warmup, rounds: iterations ?? setup.iterations) { index in
            try setup.timeForwardBackward(layers[index], world, inputs)
        }.map(median)
    }
}
