import CometShim
import Synchronization

/// What an element-wise kernel (an activation, a row copy, the top-k reduce, a norm,
/// a softmax, the optimizer's update) costs in device time when the host's CPU is
/// ignored (`--host-cpu ignored`): SimGrid SMPI's local sampling, where a burst is
/// timed for its first few runs and every later run is charged the same.
///
/// A kernel is charged its element count times a rate in seconds per element: the
/// least rate of its first `samples` calls in this process (each timed in thread CPU
/// seconds), or the rate a table on file gave (`--gemm-costs FILE`). Once a kernel's
/// rate is settled its charges depend on its element counts alone, so with a table
/// on file the device timeline repeats exactly, whatever the host's load.
///
/// When the host's CPU is charged (the default), element-wise kernels are simply
/// part of it and `elementwise` only runs its body.
public final class ElementwiseCosts: Sendable {
    /// Calls of a kernel timed before its rate is settled.
    public static let samples = 5

    /// The rates the process's element-wise kernels are charged at, when modelled.
    public static let host = ElementwiseCosts()

    private struct Rate {
        var samples: Int
        var secondsPerElement: Double
    }

    /// Per kernel name: its rate so far and the calls that set it.
    private let rates = Mutex<[String: Rate]>([:])
    /// Whether a table on file was inserted, and the kernels sampled since that it lacked.
    private let inserted = Atomic<Bool>(false), sampledBeyondInserted = Atomic<Int>(0)

    /// Kernels sampled during the run that the inserted table lacked (see
    /// `GEMMCosts.sizesSampledBeyondTable`).
    public var kernelsSampledBeyondTable: Int { sampledBeyondInserted.load(ordering: .relaxed) }

    public init() {}

    /// Every kernel's rate so far (seconds per element), in name order.
    public var entries: [(kernel: String, secondsPerElement: Double)] {
        rates.withLock { rates in rates.map { ($0.key, $0.value.secondsPerElement) } }.sorted { $0.kernel < $1.kernel }
    }

    /// Settles the rates of `kernels` (from a table on file), keeping the least where
    /// a rate is settled already.
    public func insert(_ kernels: [(kernel: String, secondsPerElement: Double)]) {
        if !kernels.isEmpty { inserted.store(true, ordering: .relaxed) }
        rates.withLock { rates in
            for (kernel, rate) in kernels {
                let known = rates[kernel].map { $0.samples >= Self.samples ? $0.secondsPerElement : .infinity } ?? .infinity
                rates[kernel] = Rate(samples: Self.samples, secondsPerElement: min(known, rate))
            }
        }
    }

    /// Seconds that `elements` elements of `kernel` cost, after a call that took
    /// `measured` CPU seconds (a sample until the rate is settled).
    public func seconds(_ kernel: String, elements: Int, measured: Double) -> Double {
        let rate = rates.withLock { rates in
            if rates[kernel] == nil, inserted.load(ordering: .relaxed) { sampledBeyondInserted.add(1, ordering: .relaxed) }
            var rate = rates[kernel] ?? Rate(samples: 0, secondsPerElement: .infinity)
            if rate.samples < Self.samples {
                rate.samples += 1
                rate.secondsPerElement = min(rate.secondsPerElement, measured / Double(elements))
                rates[kernel] = rate
            }
            return rate.secondsPerElement
        }
        return rate * Double(elements)
    }
}

/// Runs `body`, the element-wise kernel `kernel` over `elements` elements, and when
/// a model charges element-wise kernels (`ModelledKernels`) charges it from that in
/// place of its CPU time (the name is built only then: this runs per tile). `body` must not
/// contain a GEMM or another `elementwise` call, which charge themselves. In a time-only
/// run the kernel is charged without running.
@inline(__always)
public func elementwise(_ kernel: @autoclosure () -> String, elements: Int, _ body: () throws -> Void) rethrows {
    try elementwise(kernel(), elements: elements, timeOnly: (), body)
}

/// `elementwise` for a kernel that returns a value (a loss, a norm): a time-only run
/// charges it without running and returns `standIn`, which means nothing.
@inline(__always)
public func elementwise<T>(
    _ kernel: @autoclosure () -> String, elements: Int, timeOnly standIn: @autoclosure () -> T, _ body: () throws -> T
) rethrows -> T {
    guard let costs = ModelledKernels.elementwise, elements > 0 else { return try body() }
    if ModelledKernels.isTimeOnly {
        comet_charge_modelled(0, costs.elementwiseSeconds(kernel(), elements: elements, measured: 0, fused: FusedKernel.current))
        return standIn()
    }
    let start = threadCPUTime()
    let value = try body()
    let cpu = threadCPUTime() - start
    comet_charge_modelled(cpu, costs.elementwiseSeconds(kernel(), elements: elements, measured: cpu, fused: FusedKernel.current))
    return value
}
