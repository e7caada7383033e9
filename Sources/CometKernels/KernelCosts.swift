import CometShim

/// What a GEMM or an element-wise kernel costs in device time when a model charges it
/// instead of the CPU time it used: this host's sampled tables (`HostKernelCosts`) or a
/// modelled GPU (`GPUKernelCosts`, in CometLaunch beside `--device`).
public protocol KernelCosts: Sendable {
    /// Seconds a product of `kind` with `m` rows and reduction length `k` (both positive)
    /// costs, as a piece of the fused kernel `fused` (`.single`: a kernel of its own).
    func gemmSeconds(m: Int, k: Int, _ kind: GEMMCosts.Kind, fused: FusedKernel) -> Double
    /// Seconds `elements` elements of the element-wise kernel `kernel` cost, after a call
    /// that took `measured` thread CPU seconds on this host, as a piece of the fused
    /// kernel `fused`.
    func elementwiseSeconds(_ kernel: String, elements: Int, measured: Double, fused: FusedKernel) -> Double
}

/// Work that a GPU would run as pieces of one fused kernel, such as comet's tiles of an
/// expert's rows and column blocks: each piece costs its share of the whole kernel, not
/// a kernel of its own with its launch and latency floor. Set by a schedule around a
/// piece; a modelled GPU's costs read it (the host's sampled costs are per call, as the
/// host runs them).
public struct FusedKernel: Sendable {
    /// The whole kernel's rows over the piece's, and its output columns over the piece's.
    public let rows: Double, columns: Double
    /// SMs the kernel's communication thread blocks hold, which its GEMM tiles cannot
    /// use (comet's split of a modelled GPU, `ScheduleOptions.commSMs`); 0: all are the GEMM's.
    public let heldSMs: Int

    /// A kernel of its own.
    public static let single = FusedKernel(rows: 1, columns: 1, heldSMs: 0)

    /// The piece's share of the whole kernel's work.
    public var share: Double { 1 / (rows * columns) }

    /// The fused kernel the running work is a piece of; `.single` outside one.
    @TaskLocal public static var current = FusedKernel.single

    /// Runs `body`, work on `rows` rows and `columns` output columns, as a piece of a
    /// fused kernel over `wholeRows` rows and `wholeColumns` columns whose communication
    /// holds `heldSMs` SMs.
    public static func piece<T>(
        rows: Int, ofRows wholeRows: Int, columns: Int = 1, ofColumns wholeColumns: Int = 1, heldSMs: Int = 0,
        _ body: () throws -> T
    ) rethrows -> T {
        let whole = FusedKernel(rows: Double(max(wholeRows, rows, 1)) / Double(max(rows, 1)),
                                columns: Double(max(wholeColumns, columns, 1)) / Double(max(columns, 1)), heldSMs: heldSMs)
        return try $current.withValue(whole, operation: body)
    }
}

/// This host's costs: GEMMs from the sampled table `GEMMCosts.host`, element-wise
/// kernels at the rates `ElementwiseCosts.host` sampled or read from a table.
public struct HostKernelCosts: KernelCosts {
    public init() {}

    public func gemmSeconds(m: Int, k: Int, _ kind: GEMMCosts.Kind, fused: FusedKernel) -> Double {
        GEMMCosts.host.seconds(m: m, k: k, kind)
    }

    public func elementwiseSeconds(_ kernel: String, elements: Int, measured: Double, fused: FusedKernel) -> Double {
        ElementwiseCosts.host.seconds(kernel, elements: elements, measured: measured)
    }
}

/// Which kernels the process charges from a model, and from which: chosen once by the
/// launcher, on the main thread before any other thread starts, and read by every
/// `gemm` and `elementwise` call after. Without a choice every kernel's CPU time is
/// what it costs (the host device model with measured costs, or the wall clock).
///
/// A time-only run (`--time-only`) charges every kernel from a GPU's model without
/// running it: GEMMs and element-wise kernels skip their bodies (those that return a
/// value give a stand-in), matrices are never filled (`MatrixView.fill`, `randomize`,
/// `copy`), and neither rows between ranks nor the elements of big collectives move
/// (their costs are charged), so no value in the process means anything; control
/// flow, flags, link bookings and clocks run as in a computing run, and so do device
/// times.
public enum ModelledKernels {
    /// The model that charges GEMMs, whether it charges element-wise kernels too, and
    /// whether kernels run at all.
    private struct Choice {
        let costs: any KernelCosts
        let elementwise: Bool
        let timeOnly: Bool
    }

    // Written once before any other thread exists, then only read.
    nonisolated(unsafe) private static var choice: Choice?

    /// Charges every later GEMM from `costs`, and every element-wise kernel too when
    /// `elementwise` (the host's CPU ignored); with `timeOnly`, kernels and copies are
    /// charged without running (which needs `elementwise`). Call once, before starting
    /// any thread.
    public static func start(_ costs: any KernelCosts, elementwise: Bool, timeOnly: Bool = false) {
        precondition(choice == nil, "the modelled kernels are chosen once")
        precondition(!timeOnly || elementwise, "a time-only run charges every kernel from its model")
        choice = Choice(costs: costs, elementwise: elementwise, timeOnly: timeOnly)
    }

    /// The model GEMMs are charged from, if any.
    @inline(__always) static var gemms: (any KernelCosts)? { choice?.costs }

    /// The model element-wise kernels are charged from, if any.
    @inline(__always) static var elementwise: (any KernelCosts)? { choice?.elementwise == true ? choice?.costs : nil }

    /// Whether kernels and copies are charged without running (`--time-only`).
    @inline(__always) public static var isTimeOnly: Bool { choice?.timeOnly == true }
}
