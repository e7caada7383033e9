import ArgumentParser
import CometKernels
import CometLaunch
import CometMPI
import CometMoE

/// What every layer benchmark shares (`layer`, `sweep`, `tune`): the layer's shape,
/// the layout's TP, the link, the iterations, and how to make inputs, calibrate the
/// link and time one forward and backward.
struct BenchSetup: ParsableArguments {
    enum LinkChoice: String, ExpressibleByArgument, CaseIterable {
        case native, balanced, h800, l20
    }

    @Option(help: "native, balanced, h800 or l20.") var link: LinkChoice = .balanced
    @Option(help: "Measured iterations per schedule.") var iterations = 5
    @Option(help: "Warm-up iterations per schedule.") var warmup = 1
    @Option(help: "TP: ranks that share each expert's K dimension (EP = ranks / TP).") var tp = 1
    @OptionGroup var moe: MoEOptions
    @OptionGroup var flags: ScheduleFlags

    func validate() throws {
        guard iterations >= 1, warmup >= 0 else { throw ValidationError("--iterations must be at least 1 and --warmup not negative") }
        guard tp >= 1 else { throw ValidationError("--tp must be at least 1") }
    }

    /// Each rank's tokens x and output gradient dy [T, N] from the seed, and room for y and dx.
    func inputs(_ config: MoEConfig, world: Communicator) -> (x: Matrix, y: Matrix, dy: Matrix, dx: Matrix) {
        var generator = SeededGenerator(seed: moe.seed &+ 7919 &* UInt64(world.rank + 1))
        let (t, n) = (config.tokensPerRank, config.modelWidth)
        let (x, y, dy, dx) = (Matrix(rows: t, columns: n), Matrix(rows: t, columns: n), Matrix(rows: t, columns: n), Matrix(rows: t, columns: n))
        x.randomize(scale: 1, &generator)
        dy.randomize(scale: 1, &generator)
        return (x, y, dy, dx)
    }

    /// The `--link` model: balanced is calibrated in this run, the presets are scaled
    /// to this machine's measured GEMM speed. Collective.
    func linkModel(
        _ config: MoEConfig, world: Communicator, tensorParallel: Int, x: Matrix, y: Matrix, dy: Matrix, dx: Matrix
    ) throws -> (LinkModel, Calibration) {
        let calibration = try calibrate(world, config: config, tensorParallel: tensorParallel, x: x, y: y, dy: dy, dx: dx)
        let model: LinkModel = switch link {
        case .native: .native
        // Forward and backward: two passes, each a dispatch and a combine.
        case .balanced: .balanced(gemmSeconds: calibration.gemmSeconds, busiestPairBytes: calibration.busiestPairBytes, exchanges: 4)
        case .h800: DevicePreset.h800.link(rankFLOPs: calibration.rankFLOPs)
        case .l20: DevicePreset.l20.link(rankFLOPs: calibration.rankFLOPs)
        }
        return (model, calibration)
    }

    /// What the balanced link and the device presets are derived from: sequential's
    /// forward and backward on a native link, measured on every rank (slowest rank counts).
    struct Calibration: Codable {
        /// GEMM seconds of one forward and backward.
        let gemmSeconds: Double
        /// Bytes of the busiest rank pair's exchange (either direction).
        let busiestPairBytes: Int
        /// One rank's GEMM FLOP/s, wall clock.
        let rankFLOPs: Double
    }

    private func calibrate(
        _ world: Communicator, config: MoEConfig, tensorParallel: Int, x: Matrix, y: Matrix, dy: Matrix, dx: Matrix
    ) throws -> Calibration {
        let layer = try MoELayer(
            config: config, group: world, tensorParallel: tensorParallel,
            schedule: ScheduleKind.sequential.make(config: config, options: flags.options(chunks: 1), group: world,
                                                   tensorParallel: tensorParallel),
            link: .native)
        var seconds: [Double] = [], flops = 0.0
        var bytes = 0
        for _ in 0..<3 {
            try world.barrier()
            try layer.forward(x.view, into: y.view)
            let forward = layer.timeline.all
            try layer.backward(dy.view, auxLossGradient: 0, into: dx.view)
            bytes = (layer.lastPlan?.busiestPairRows ?? 0) * config.modelWidth * MemoryLayout<Float>.stride
            let gemm = Timeline.busySeconds(.gemm, in: forward) + layer.timeline.busySeconds(.gemm)
            seconds.append(try world.allReduce(gemm, .max))
            flops = (forward + layer.timeline.all).reduce(0) { $0 + $1.flops }
        }
        let gemmSeconds = seconds.sorted()[1]
        return Calibration(gemmSeconds: gemmSeconds, busiestPairBytes: Int(try world.allReduce(Int64(bytes), .max)),
                           rankFLOPs: try world.allReduce(flops, .max) / gemmSeconds)
    }

    /// Seconds of one forward and backward between barriers (slowest rank).
    func timeForwardBackward(_ layer: MoELayer, _ world: Communicator, x: Matrix, y: Matrix, dy: Matrix, dx: Matrix) throws -> Double {
        layer.zeroGradients()
        try world.barrier()
        let start = monotonicSeconds()
        try layer.forward(x.view, into: y.view)
        try layer.backward(dy.view, auxLossGradient: 0.01, into: dx.view)
        try world.barrier()
        return try world.allReduce(monotonicSeconds() - start, .max)
    }

}
