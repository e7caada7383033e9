import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import CometMoE

/// What every layer benchmark shares (`layer`, `sweep`, `tune`): the layer's shape,
/// the layout's TP, the link, the iterations, and how to make inputs, calibrate the
/// link and time one forward and backward.
struct BenchSetup: ParsableArguments {
    @Option(help: LinkChoice.help) var link: LinkChoice?
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
    func inputs(_ config: MoEConfig, world: Communicator) -> LayerInputs {
        var generator = SeededGenerator(seed: moe.seed &+ 7919 &* UInt64(world.rank + 1))
        let (t, n) = (config.tokensPerRank, config.modelWidth)
        let inputs = LayerInputs(x: Matrix(rows: t, columns: n), y: Matrix(rows: t, columns: n), dy: Matrix(rows: t, columns: n),
                                 dx: Matrix(rows: t, columns: n))
        inputs.x.randomize(scale: 1, &generator)
        inputs.dy.randomize(scale: 1, &generator)
        return inputs
    }

    /// A layer of `kind` with `options` on the world, its rows moving on `link`. Collective.
    func layer(
        _ kind: ScheduleKind, _ options: ScheduleOptions, _ config: MoEConfig, world: Communicator, tensorParallel: Int,
        link: LinkModel, device: Device
    ) throws -> MoELayer {
        try MoELayer(config: config, group: world, tensorParallel: tensorParallel, schedule: kind, options: options, link: link,
                     device: device, forcePutGet: flags.forcePutGet)
    }

    /// The `--link` choice on the emulated device `emulated` (`LinkChoice.resolve`).
    func linkChoice(on emulated: DeviceChoice) throws -> LinkChoice { try LinkChoice.resolve(link, on: emulated) }

    /// The `--link` model on the emulated device `emulated`, and what it was calibrated
    /// on: sequential's forward and backward on a native link (one MoE layer). Collective.
    func linkModel(
        _ config: MoEConfig, world: Communicator, tensorParallel: Int, inputs: LayerInputs, device: Device, emulated: DeviceChoice
    ) throws -> (LinkModel, Calibration) {
        let choice = try linkChoice(on: emulated)
        let layer = try self.layer(.sequential, flags.options(chunks: 1), config, world: world, tensorParallel: tensorParallel,
                                   link: .native, device: device)
        let calibration = try Calibration.measure(world, moeLayers: 1) {
            try world.barrier()
            try layer.forward(inputs.x.view, into: inputs.y.view)
            let forward = layer.timeline.all
            try layer.backward(inputs.dy.view, auxLossGradient: 0, into: inputs.dx.view)
            let activities = forward + layer.timeline.all
            return Calibration.Sample(
                forwardGEMMSeconds: Timeline.busySeconds(.gemm, in: forward),
                passGEMMSeconds: Timeline.busySeconds(.gemm, in: activities), flops: activities.reduce(0) { $0 + $1.flops },
                busiestPairBytes: (layer.lastPlan?.busiestLinkRows(.perPeer) ?? 0) * config.modelWidth * MemoryLayout<Float>.stride,
                busiestPortBytes: (layer.lastPlan?.busiestLinkRows(.perPort) ?? 0) * config.modelWidth * MemoryLayout<Float>.stride)
        }
        return (calibration.link(choice, device: emulated), calibration)
    }

    /// Seconds of one forward and backward between barriers (slowest rank), on the layer's clock.
    func timeForwardBackward(_ layer: MoELayer, _ world: Communicator, _ inputs: LayerInputs) throws -> Double {
        layer.zeroGradients()
        try world.barrier()
        let start = layer.timeline.clock.now()
        try layer.forward(inputs.x.view, into: inputs.y.view)
        try layer.backward(inputs.dy.view, auxLossGradient: 0.01, into: inputs.dx.view)
        try world.barrier()
        return try world.allReduce(layer.timeline.clock.seconds(since: start), .max)
    }
}

/// A layer benchmark's inputs x and dy [T, N], and its outputs y and dx.
struct LayerInputs {
    let x: Matrix, y: Matrix, dy: Matrix, dx: Matrix
}
