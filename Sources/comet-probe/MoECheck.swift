import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import CometMoE

/// Every schedule's forward output and gradients against the single-process
/// reference layer, over all ranks' tokens. With `--stall-rank` it checks instead
/// that a rank that never runs the layer ends the job with a deadline report.
struct MoECheck: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe", abstract: "MoE schedules against the single-process reference, forward and backward.")

    @Option(help: "Schedules to check: sequential, chunked, comet, comet-rows (repeatable; default all).")
    var schedule: [ScheduleKind] = ScheduleKind.allCases
    @Option(help: "TP: ranks that share each expert's K dimension (EP = ranks / TP).") var tp = 1
    @Option(help: "Chunks of the chunked schedule.") var chunks = 3
    @Flag(help: "Every token's first choice is expert 0.") var oneExpert = false
    @Flag(help: "The last rank has no tokens.") var silentRank = false
    @Flag(help: "Emulate a slow link (50 us, 0.5 GB/s) instead of the native one.") var slowLink = false
    @Flag(help: ArgumentHelp(
        "The last rank sets up the layer and agrees its routing plan, then never runs the schedule.",
        discussion: "The other ranks wait for it inside the first schedule until --wait-timeout passes; "
            + "the job must then abort with a report of what they waited for, not hang."))
    var stallRank = false
    @OptionGroup var moe: MoEOptions
    @OptionGroup var flags: ScheduleFlags
    @OptionGroup var runtime: RuntimeOptions

    static let tolerance = 1e-5

    /// "balanced", "one-expert" or "imbalance S", as the passing line names it.
    var routing: String { oneExpert ? "one-expert" : moe.imbalance > 0 ? "imbalance \(moe.imbalance)" : "balanced" }

    func run(on context: RankContext) throws {
        let world = context.world, config = moe.config, options = flags.options(chunks: chunks)
        let (tokens, modelWidth) = (config.tokensPerRank, config.modelWidth)
        guard tp >= 1, world.size % tp == 0 else { throw InputError("--tp \(tp) must divide the \(world.size) ranks") }
        try config.validate(expertParallel: world.size / tp, tensorParallel: tp)
        if stallRank && world.size < 2 { throw InputError("--stall-rank needs at least 2 ranks") }
        let link = slowLink ? LinkModel(name: "slow", latency: 50e-6, bandwidth: 0.5e9) : .native
        let device = context.device

        // Every rank builds every rank's tokens and the reference from the same seeds.
        let counts = (0..<world.size).map { silentRank && $0 == world.size - 1 ? 0 : tokens }
        let xs = counts.enumerated().map { random(rows: $1, columns: modelWidth, seed: 1000 + UInt64($0)) }
        let dys = counts.enumerated().map { random(rows: $1, columns: modelWidth, seed: 2000 + UInt64($0)) }
        let earlierXs = counts.enumerated().map { random(rows: $1, columns: modelWidth, seed: 3000 + UInt64($0)) }
        let earlierDys = counts.enumerated().map { random(rows: $1, columns: modelWidth, seed: 4000 + UInt64($0)) }
        let reference = ReferenceLayer(config: config, router: Router(config: config))
        steer(reference.router)
        let ys = reference.forward(xs.map(\.view))
        let dxs = reference.backward(xs.map(\.view), dys.map(\.view), auxLossGradient: 0.1)

        let me = world.rank
        var worst = 0.0
        for kind in schedule {
            let layer = try MoELayer(config: config, group: world, tensorParallel: tp, schedule: kind, options: options, link: link,
                                     device: device, forcePutGet: flags.forcePutGet)
            steer(layer.router)
            if stallRank && me == world.size - 1 { try stall(layer, xs[me]) }
            let y = Matrix(rows: counts[me], columns: modelWidth), dx = Matrix(rows: counts[me], columns: modelWidth)
            // Twice, so that the second call reuses every buffer and flag; the first on other
            // tokens, so that rows a schedule failed to recompute would show in the check.
            for (x, dy) in [(earlierXs[me], earlierDys[me]), (xs[me], dys[me])] {
                layer.zeroGradients()
                try layer.forward(x.view, into: y.view)
                try layer.backward(dy.view, auxLossGradient: 0.1, into: dx.view)
            }
            var gate = layer.router.gateGradient.elements
            try world.allReduce(&gate, .sum)
            var errors = [relativeError(y.elements, ys[me].elements), relativeError(dx.elements, dxs[me].elements),
                          relativeError(gate, reference.router.gateGradient.elements)]
            for local in 0..<layer.experts.count {
                let global = layer.experts.firstExpert + local
                let (up, down) = (layer.experts.upGradient[local], layer.experts.downGradient[local])
                let (expectedUp, expectedDown) = (Matrix(rows: up.rows, columns: up.columns), Matrix(rows: down.rows, columns: down.columns))
                layer.experts.copyShard(ofUp: reference.experts.upGradient[global], into: expectedUp.view)
                layer.experts.copyShard(ofDown: reference.experts.downGradient[global], into: expectedDown.view)
                errors.append(relativeError(up.elements, expectedUp.elements))
                errors.append(relativeError(down.elements, expectedDown.elements))
            }
            let error = try world.allReduce(errors.max() ?? 0, .max)
            if error > Self.tolerance {
                throw InputError("schedule \(kind.rawValue): relative error \(error) exceeds \(Self.tolerance)")
            }
            worst = max(worst, error)
        }
        let (nodes, path) = (try world.nodeCount(), try SelfCheck.windowRoundTrip(on: world, forcePutGet: flags.forcePutGet))
        announce(world, "moe: passed on \(world.size) ranks (EP=\(world.size / tp) x TP=\(tp)), schedules \(schedule.map(\.rawValue).joined(separator: ",")), "
            + "routing \(routing), top-k \(moe.topK), max relative error \(String(format: "%.1e", worst)) "
            + "(tolerance \(String(format: "%.0e", Self.tolerance))), \(nodes) node\(nodes == 1 ? "" : "s"), window path \(path.rawValue)")
    }

    /// `--stall-rank` on the last rank: joins the collective steps of the layer that
    /// come before the schedule (the window, built with the layer, and the routing
    /// plan's count exchange), so that its peers get into the schedule, and then
    /// waits in a barrier that none of them reaches until the job is aborted.
    private func stall(_ layer: MoELayer, _ x: Matrix) throws -> Never {
        _ = try RoutingPlan(choices: layer.router.forward(x.view).choices, tokens: x.rows, topK: moe.topK, experts: moe.experts,
                            group: layer.group, tensorParallel: tp)
        try layer.group.withWaitTimeout(600).barrier()
        Job.abort("--stall-rank: the stalled rank's barrier returned, so its peers left the schedule without it")
    }

    private func steer(_ router: Router) {
        if oneExpert { router.bias = (0..<moe.experts).map { $0 == 0 ? 50 : 0 } }
    }

    private func random(rows: Int, columns: Int, seed: UInt64) -> Matrix {
        var generator = SeededGenerator(seed: seed)
        let matrix = Matrix(rows: rows, columns: columns)
        matrix.randomize(scale: 1, &generator)
        return matrix
    }
}

/// ||a - b|| / ||b|| (0 when both are empty or zero).
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "compared arrays differ in length")
    var difference = 0.0, norm = 0.0
    for (x, y) in zip(a, b) {
        difference += Double(x - y) * Double(x - y)
        norm += Double(y) * Double(y)
    }
    return norm == 0 ? difference.squareRoot() : (difference / norm).squareRoot()
}
