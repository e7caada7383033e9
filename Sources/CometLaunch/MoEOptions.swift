import ArgumentParser
import CometDevices
import CometKernels
import CometMoE

/// The MoE layer's shape on the command line.
public struct MoEOptions: ParsableArguments {
    @Option(help: "Tokens each rank routes (T).") public var tokens = 1024
    @Option(help: "Model width (N).") public var modelWidth = 512
    @Option(help: "Expert FFN width (K).") public var hiddenWidth = 1024
    @Option(help: "Experts (E), sharded over the expert-parallel ranks.") public var experts = 8
    @Option(help: "Experts per token.") public var topK = 2
    @Option(help: "gelu or swiglu.") public var activation: Activation = .gelu
    @Option(help: "Standard deviation of the per-expert share of tokens (0 to 0.5).") public var imbalance = 0.0
    @Option(help: ArgumentHelp(
        "learned (each token's top-k by the gate's scores) or quotas (each expert gets exactly its --imbalance share of "
            + "every rank's tokens, as the paper's benchmarks route; a time-only run's only routing).",
        valueName: "learned|quotas"))
    public var routing: RoutingSource?
    @Option(help: "Seed for weights and tokens.") public var seed: UInt64 = 1

    public init() {}

    public var config: MoEConfig {
        var config = MoEConfig()
        (config.tokensPerRank, config.modelWidth, config.hiddenWidth) = (tokens, modelWidth, hiddenWidth)
        (config.experts, config.topK, config.activation) = (experts, topK, activation)
        (config.imbalance, config.seed) = (imbalance, seed)
        config.routing = routing ?? (ModelledKernels.isTimeOnly ? .quotas : .learned)
        return config
    }
}

/// Engines and tiles of the schedules on the command line (`ScheduleOptions`).
public struct ScheduleFlags: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Engines per rank, the emulated device's cores (at least 2): what the communicators and GEMM engines divide.",
        discussion: "comet: --comm-threads communicators and the rest GEMM engines; sequential and chunked: one communicator "
            + "(sequential's main thread, chunked's communicator thread) and N - 1 GEMM engines."))
    public var coresPerRank = 2
    @Option(help: "Comet's communicator engines; its GEMM engines are the rest of --cores-per-rank (default 1).")
    public var commThreads: Int?
    @Option(help: "Comet's GEMM engines, instead of --comm-threads: the communicators are the rest of --cores-per-rank.")
    public var gemmThreads: Int?
    @Option(help: "Rows per layer0 transfer tile (comet; default: by link, 64, or whole segments on a native link).")
    public var tileRows: Int?
    @Option(help: "Columns per layer1 column block (comet; default: by link, 256, or one block on a native link).")
    public var blockColumns: Int?
    @Option(help: ArgumentHelp(
        "SMs comet's communication thread blocks hold on a modelled GPU (--device): its pulls and pushes copy at what that "
            + "many blocks reach, its GEMMs run on the rest (default \(GPUModel.defaultCommSMs)).", valueName: "N"))
    public var commSms: Int?
    @Flag(help: "Use MPI_Put/MPI_Get windows even on one node (comet).") public var forcePutGet = false

    public init() {}

    /// The options, with `chunks` for the chunked schedule.
    public func options(chunks: Int) -> ScheduleOptions {
        var options = ScheduleOptions()
        (options.coresPerRank, options.commThreads, options.gemmThreads) = (coresPerRank, commThreads, gemmThreads)
        options.tileRows = tileRows
        (options.blockColumns, options.chunks, options.commSMs) = (blockColumns, chunks, commSms)
        return options
    }
}

extension ScheduleKind: ExpressibleByArgument {}
extension Activation: ExpressibleByArgument {}
extension RoutingSource: ExpressibleByArgument {}
