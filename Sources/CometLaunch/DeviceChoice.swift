import ArgumentParser
import CometDevices
import CometKernels
import CometMoE

/// The emulated device whose costs advance device time (`--device`): this host, or a
/// modelled GPU (CometDevices: H200 measurements carried to H800 and L20).
public enum DeviceChoice: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// This host: GEMMs and element-wise kernels at rates sampled here (or the host's
    /// CPU time), transfers on the run's link.
    case host
    case h200, h800, l20

    /// The modelled GPU, nil for the host.
    public var gpu: GPUModel? { GPUModel.named(rawValue) }

    /// The model that charges kernels on this device: the host's sampled tables, or the GPU's costs.
    var kernelCosts: any KernelCosts { gpu.map { GPUKernelCosts(gpu: $0) } ?? HostKernelCosts() }
}

/// A modelled GPU's kernels in device time: a GEMM costs what `GPUModel.gemmSeconds`
/// says for its m, n and k (measured H200 times, interpolated, carried to the GPU by
/// its peak ratios); an element-wise kernel reads and writes each element once in
/// bf16 (4 bytes an element) at the GPU's achieved memory bandwidth, plus a launch.
/// A piece of a fused kernel (`FusedKernel`) costs its share of the whole kernel's
/// time, so a launch and a latency floor are paid once per kernel, not once per tile,
/// and the whole kernel runs on the SMs its communication leaves (`smSplitFactor`).
/// (For a weight gradient, whose rows are the GEMM's reduction, the whole is taken
/// as that many more output rows: the same FLOPs, a nearby shape.) The host's arithmetic
/// still runs, in Float, so outputs are those of every device.
struct GPUKernelCosts: KernelCosts {
    let gpu: GPUModel

    func gemmSeconds(m: Int, k: Int, _ kind: GEMMCosts.Kind, fused: FusedKernel) -> Double {
        let whole = (m: Int((Double(m) * fused.rows).rounded()), n: Int((Double(kind.n) * fused.columns).rounded()))
        return gpu.gemmSeconds(m: whole.m, n: whole.n, k: k, heldSMs: fused.heldSMs) * fused.share
    }

    func elementwiseSeconds(_ kernel: String, elements: Int, measured: Double, fused: FusedKernel) -> Double {
        gpu.elementwiseSeconds(bytes: Int((Double(4 * elements) / fused.share).rounded())) * fused.share
    }
}

extension GPUModel {
    /// The GPUs' interconnect as an emulated link: a transfer takes the GPU's latency
    /// plus its bytes over the achieved link bandwidth of the GPU's port, each
    /// direction a queue (`perPort`: whichever peer the bytes go to or come from), with
    /// bf16 rows: half the bytes comet's Float rows hold. So a transfer from one peer
    /// at a time runs at the port's full rate, as comet's pulls do on NVLink, and an
    /// all-to-all's shares of the port add up.
    ///
    /// Its copy rates are those of `copyRate` by thread blocks (`LinkModel.CopyRates`), in
    /// the link's Float bytes: what comet's communication blocks reach.
    public var link: LinkModel {
        let rates = { (path: CopyPath) in (0...sms).map { 2 * copyRate(path, blocks: $0) } }
        return LinkModel(name: name, latency: transferLatency, bandwidth: 2 * achievedLinkBandwidth, queues: .perPort,
                         copyRates: LinkModel.CopyRates(pull: rates(.pull), push: rates(.push), defaultBlocks: Self.defaultCommSMs))
    }

    /// SMs comet's communication blocks hold when neither `--comm-sms` nor a tuner says:
    /// 24, between the paper's 18 and 26 at TP 8 (the split `comet-bench tune` chooses
    /// per shape moves with it).
    public static let defaultCommSMs = 24
}
