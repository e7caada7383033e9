import ArgumentParser
import CometCore
import CometKernels
import CometMPI
import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// What a rank knows once the runtime is up.
public struct RankContext: Sendable {
    /// The world, with the command's wait deadline.
    public let world: Communicator
    public let blas: OpenBLAS.KernelChoice
    /// The device this rank plays for its lifetime: its worker threads and its clock.
    public let device: Device
}

/// A command that runs on every rank of an MPI job.
public protocol RankCommand: ParsableCommand {
    var runtime: RuntimeOptions { get }
    /// Whether the command's rows move on an emulated link (a `LinkModel` other than
    /// native), which books every transfer in device time.
    var linkIsEmulated: Bool { get }
    /// Whether the command can run time-only (`--time-only`): it times schedules and
    /// reads none of their values.
    var runsTimeOnly: Bool { get }
    func run(on context: RankContext) throws
}

extension RankCommand {
    public var linkIsEmulated: Bool { false }
    public var runsTimeOnly: Bool { false }

    public func run() throws {
        throw InputError("\(Self._commandName) runs through Launch.main")
    }
}

/// Start-up and shut-down shared by comet's executables.
public enum Launch {
    /// Runs `Root` on this rank:
    /// 1. settles the BLAS kernel, which may re-run the process (`OpenBLAS.chooseKernel`);
    /// 2. initialises MPI, so that every later message comes from rank 0 alone;
    /// 3. parses the command line: help and parse errors are printed by rank 0;
    /// 4. runs the command. A `UniformError` is reported by rank 0 and every rank exits 1;
    ///    any other error aborts the job from the rank that threw it, so no peer hangs.
    public static func main<Root: ParsableCommand>(_ root: Root.Type) -> Never {
        let blas = OpenBLAS.chooseKernel()
        let world: Communicator
        do {
            world = try MPIRuntime.initialize()
        } catch {
            report(error)
            exit(1)
        }
        do {
            let command = try Root.parseAsRoot()
            if let command = command as? any RankCommand {
                if command.runtime.timeOnly, !command.runsTimeOnly {
                    throw InputError("\(type(of: command)._commandName) needs the values it computes: --time-only is for "
                        + "comet-bench layer, sweep, tune, e2e and paper")
                }
                let device = Device(clock: try command.runtime.makeClock(world: world, linkIsEmulated: command.linkIsEmulated))
                let context = RankContext(world: world.withWaitTimeout(command.runtime.waitTimeout).withClock(device.clock),
                                          blas: blas, device: device)
                try run(command, on: context)
                try command.runtime.reportTableGaps(world: world)
                try command.runtime.saveGEMMCostsIfAsked(world: world)
            } else {
                var command = command  // help, or a group without a subcommand
                try command.run()
            }
        } catch let error as UniformError {
            if world.rank == 0 { report(error) }
            finish(1)
        } catch {
            let code = Root.exitCode(for: error)
            if world.rank == 0 {
                let message = Root.fullMessage(for: error)
                if code == .success { print(message) } else { comet_write_stderr("\(message)\n") }
            }
            finish(code.rawValue)
        }
        finish(0)
    }

    /// Runs `command`, turning its errors into an exit status (see `main`).
    private static func run(_ command: any RankCommand, on context: RankContext) throws {
        do {
            try command.run(on: context)
        } catch let error as UniformError {
            if context.world.rank == 0 { report(error) }
            throw ExitCode.failure
        } catch let exit as ExitCode {
            throw exit
        } catch {
            Job.abort("\(error)")
        }
    }

    private static func finish(_ code: Int32) -> Never {
        MPIRuntime.finalize()
        exit(code)
    }

    private static func report(_ error: any Error) {
        let program = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? "comet"
        comet_write_stderr("\(program): error: \(error)\n")
    }
}

/// Options every comet executable shares.
public struct RuntimeOptions: ParsableArguments {
    @Option(help: "Seconds any wait for a peer may last before the job aborts with a report.")
    public var waitTimeout: Double = MPIRuntime.defaultWaitTimeout

    @Option(help: ArgumentHelp("Time of every figure: device (the emulated cluster's: each thread is an engine whose clock advances by the CPU time it uses and the events it waits for, whatever the host's cores) or wall (this host's).",
                               valueName: "device|wall"))
    public var clock: ClockChoice = .device

    @Option(help: ArgumentHelp("What a GEMM costs in device time: sampled (per shape, the least CPU time of a few runs on this host, as SimGrid's SMPI samples bursts: the same on every call, whatever the host's load then), measured (each call's own CPU time), or a table FILE that --save-gemm-costs wrote on this machine (what it lacks is sampled).",
                               valueName: "sampled|measured|FILE"))
    public var gemmCosts: GEMMCostChoice = .sampled

    @Option(help: ArgumentHelp("What device time charges for the host's CPU outside modelled kernels: charged (the CPU time each thread uses, the emulated device being this CPU with a core per engine), ignored (only GEMMs, element-wise kernels and the emulated link's transfers advance device time, at rates sampled on this host or read from --gemm-costs FILE: with a table on file, a run's timeline and comet's choices repeat exactly; needs an emulated link), or auto (ignored on an emulated link with sampled costs, else charged).",
                               valueName: "auto|charged|ignored"))
    public var hostCpu: HostCPUChoice = .auto

    @Option(help: ArgumentHelp("The emulated device: host (this CPU: kernels cost what they cost here, sampled or measured) or a modelled GPU, h200, h800 or l20 (GEMMs from H200 measurements carried over by peak ratios, element-wise kernels by their bytes at the GPU's memory bandwidth, rows on the GPUs' interconnect; the host's CPU is ignored, so every figure repeats exactly). Needs --clock device.",
                               valueName: "host|h200|h800|l20"))
    public var device: DeviceChoice = .host

    @Flag(help: ArgumentHelp("Charge every kernel and transfer from the --device GPU's model without computing or copying anything: schedules run their real control flow, flags, link bookings and clocks, on memory that is reserved but never written, so layers of real models' sizes run in seconds; device times are those of a computing run. Routes by quotas (--routing)."))
    public var timeOnly = false

    @Option(help: ArgumentHelp("After the run, write the GEMM costs it sampled (and any it loaded) to this CSV file, for --gemm-costs FILE.",
                               valueName: "FILE"))
    public var saveGemmCosts: String?

    public init() {}

    public func validate() throws {
        guard waitTimeout > 0 else { throw ValidationError("--wait-timeout must be positive") }
        if saveGemmCosts != nil, clock != .device || gemmCosts == .measured {
            throw ValidationError("--save-gemm-costs needs sampled GEMM costs on device time (--clock device, --gemm-costs sampled or FILE)")
        }
        if device != .host, clock != .device || gemmCosts != .sampled || hostCpu == .charged || saveGemmCosts != nil {
            throw ValidationError("--device \(device.rawValue) charges every kernel from the GPU's model on device time: "
                + "it takes none of --clock wall, --gemm-costs, --host-cpu charged or --save-gemm-costs")
        }
        if timeOnly, device == .host {
            throw ValidationError("--time-only charges every kernel from a modelled GPU's costs: choose one with --device h200|h800|l20")
        }
        if hostCpu == .ignored, clock != .device || gemmCosts == .measured {
            throw ValidationError("--host-cpu ignored needs sampled GEMM costs on device time (--clock device, --gemm-costs sampled or FILE)")
        }
    }

    /// The rank's clock, made on its main thread, for a command whose rows move on an
    /// emulated link or not. With device time and modelled GEMM costs (sampled, a table,
    /// or a GPU's), every GEMM of the process is charged from the device's model from
    /// now on (`ModelledKernels`); when the host's CPU is ignored (always on a GPU),
    /// every element-wise kernel too. A device clock's rank runs on one CPU
    /// (`CorePinning`). Collective.
    public func makeClock(world: Communicator, linkIsEmulated: Bool) throws -> any Clock {
        if let path = saveGemmCosts, let problem = GEMMCostTable.writeProblem(path) {
            throw InputError("--save-gemm-costs \(path): \(problem)")
        }
        if hostCpu == .ignored, !linkIsEmulated {
            throw InputError("--host-cpu ignored needs an emulated link, and this run's rows move on the native link, "
                + "where a transfer is MPI's copy, which only the host's CPU time charges")
        }
        guard clock == .device else { return WallClock() }
        if case .table(let path) = gemmCosts { try GEMMCostTable.load(path, world: world).insertIntoHost() }
        let ignored = device != .host || hostCpu == .ignored || (hostCpu == .auto && linkIsEmulated && gemmCosts != .measured)
        if gemmCosts != .measured { ModelledKernels.start(device.kernelCosts, elementwise: ignored, timeOnly: timeOnly) }
        try CorePinning.pinForDeviceClock(world: world)
        return DeviceClock(timeout: waitTimeout, hostCPU: ignored ? .ignored : .charged)
    }

    /// Says, from rank 0, when a run charged from a table on file sampled sizes or
    /// kernels it lacked: its figures then rest on this run's samples, and comet's
    /// choices, and so its outputs' last bits, may move from run to run. Collective.
    public func reportTableGaps(world: Communicator) throws {
        guard clock == .device, device == .host, case .table(let path) = gemmCosts else { return }
        var gaps = [Int64(GEMMCosts.host.sizesSampledBeyondTable), Int64(ElementwiseCosts.host.kernelsSampledBeyondTable)]
        try world.allReduce(&gaps, .sum)
        guard world.rank == 0, gaps.contains(where: { $0 > 0 }) else { return }
        print("note: \(path) lacked \(gaps[0]) GEMM sizes and \(gaps[1]) element-wise kernels that this run sampled (all "
            + "ranks together), so its figures and comet's choices may move from run to run; --gemm-costs \(path) "
            + "--save-gemm-costs FILE writes a table with them")
    }

    /// Writes the cost tables if the run was asked to. Collective.
    public func saveGEMMCostsIfAsked(world: Communicator) throws {
        guard let path = saveGemmCosts else { return }
        try GEMMCostTable.save(.host, to: path, world: world)
    }
}

/// The EP x TP x DP flags; sizes left out take what the job has left.
public struct LayoutOptions: ParsableArguments {
    @Option(name: .customLong("ep"), help: "Expert-parallel ranks (default: what TP and DP leave).")
    public var expertParallel: Int?
    @Option(name: .customLong("tp"), help: "Tensor-parallel ranks per expert (default 1).")
    public var tensorParallel: Int?
    @Option(name: .customLong("dp"), help: "Data-parallel replicas of the expert grid (default: what EP and TP leave).")
    public var dataParallel: Int?

    public init() {}

    public func layout(worldSize: Int) throws -> ParallelLayout {
        try ParallelLayout.resolve(worldSize: worldSize, ep: expertParallel, tp: tensorParallel, dp: dataParallel)
    }
}

/// What device time charges for the host's CPU (`--host-cpu`; see `HostCPU`).
public enum HostCPUChoice: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// Ignored where the rows move on an emulated link and GEMM costs are sampled
    /// (the benches' default), charged elsewhere (comet-train, the native link).
    case auto
    case charged
    case ignored
}

/// Which clock a run reads (`--clock`).
public enum ClockChoice: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// The emulated device's time (`DeviceClock`).
    case device
    /// This host's wall time (`WallClock`): for a host with a core for every engine.
    case wall

}
