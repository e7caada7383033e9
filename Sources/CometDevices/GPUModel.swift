/// A modelled GPU: the figures its costs derive from. Its GEMMs, SM splits and copies by
/// thread blocks are H200 measurements (`MeasuredTables`) carried over by these figures'
/// ratios to the H200's (`GPUModel+GEMM.swift`, `GPUModel+Copies.swift`).
///
/// Sources: NVIDIA's datasheets (H200 Tensor Core GPU; H800 Tensor Core GPU, SXM; L20) and
/// Hopper architecture whitepaper, and the H200 tables in `Data/`. Peak figures are dense
/// (the datasheets' bf16 figures are with 2:4 sparsity, twice the dense rate).
public struct GPUModel: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Lower-case name: "h200", "h800", "l20".
    public let name: String
    /// Streaming multiprocessors.
    public let sms: Int
    /// Peak dense bf16 tensor-core FLOP/s.
    public let peakFLOPs: Double
    /// Peak memory (HBM or GDDR) bandwidth, bytes/s.
    public let memoryBandwidth: Double
    /// Peak bandwidth to the other GPUs, bytes/s in each direction.
    public let linkBandwidth: Double
    /// Seconds a transfer to another GPU takes before its first byte.
    public let transferLatency: Double
    /// Seconds a kernel launch costs.
    public let launchSeconds: Double

    public init(
        name: String, sms: Int, peakFLOPs: Double, memoryBandwidth: Double, linkBandwidth: Double,
        transferLatency: Double, launchSeconds: Double
    ) {
        (self.name, self.sms, self.peakFLOPs, self.memoryBandwidth) = (name, sms, peakFLOPs, memoryBandwidth)
        (self.linkBandwidth, self.transferLatency, self.launchSeconds) = (linkBandwidth, transferLatency, launchSeconds)
    }

    public var description: String { name }

    /// Kernel launch cost on every model: the "a few microseconds" (no measurement
    /// here; the fastest measured GEMM, launch included, took 11.2 us).
    public static let defaultLaunchSeconds = 3e-6

    /// Fraction of peak memory bandwidth a copy reaches: H200 device-to-device copy of
    /// 256 MiB, 4184 GB/s read+write (note in h200_bf16_expert_gemm.csv), over 4.8 TB/s.
    public static let memoryEfficiency = 4184e9 / 4.8e12

    /// NVIDIA H200 SXM (141 GB HBM3e), the measured GPU.
    /// - 132 SMs: GH100 as in H100 SXM5 (Hopper whitepaper; H200 is the same die).
    /// - 989.4 TFLOP/s bf16 dense: datasheet 1,979 TFLOPS with sparsity, halved.
    /// - 4.8 TB/s HBM3e: datasheet.
    /// - 450 GB/s per direction: datasheet NVLink 900 GB/s (both directions together).
    /// - 9.5 us per transfer: h200_copy_by_ctas.csv, copy engine 4 KiB 9.7 us, 64 KiB 9.4 us.
    public static let h200 = GPUModel(
        name: "h200", sms: 132, peakFLOPs: 989.4e12, memoryBandwidth: 4.8e12, linkBandwidth: 450e9,
        transferLatency: 9.5e-6, launchSeconds: defaultLaunchSeconds)

    /// NVIDIA H800 SXM5 (80 GB HBM3), the Comet paper's GPU.
    /// - 132 SMs and 989.4 TFLOP/s bf16 dense: H800 datasheet, the H100 SXM's tensor cores
    ///   (1,979 TFLOPS with sparsity, halved).
    /// - 3.35 TB/s HBM3: datasheet.
    /// - 200 GB/s per direction: datasheet NVLink 400 GB/s (both directions together).
    /// - 9.5 us per transfer: assumed as H200's (same NVLink generation and copy path).
    public static let h800 = GPUModel(
        name: "h800", sms: 132, peakFLOPs: 989.4e12, memoryBandwidth: 3.35e12, linkBandwidth: 200e9,
        transferLatency: 9.5e-6, launchSeconds: defaultLaunchSeconds)

    /// NVIDIA L20 (48 GB GDDR6, Ada AD102), the paper's PCIe GPU.
    /// - 92 SMs: datasheet 11,776 CUDA cores, 128 per Ada SM.
    /// - 119.5 TFLOP/s bf16 dense: datasheet (239 TFLOPS with sparsity).
    /// - 864 GB/s GDDR6: datasheet.
    /// - 32 GB/s per direction: datasheet PCIe Gen4 x16, 64 GB/s bidirectional; with the link
    ///   efficiency measured on H200 (`achievedLinkBandwidth`) about 25.7 GB/s.
    /// - 10 us per transfer: the figure through the host (no measurement).
    public static let l20 = GPUModel(
        name: "l20", sms: 92, peakFLOPs: 119.5e12, memoryBandwidth: 864e9, linkBandwidth: 32e9,
        transferLatency: 10e-6, launchSeconds: defaultLaunchSeconds)

    /// Every modelled GPU.
    public static let all: [GPUModel] = [h200, h800, l20]

    /// The modelled GPU named `name` ("h200", "h800", "l20"), if any.
    public static func named(_ name: String) -> GPUModel? { all.first { $0.name == name.lowercased() } }

    /// Memory bytes/s a kernel reaches: peak times `memoryEfficiency`.
    public var achievedMemoryBandwidth: Double { memoryBandwidth * Self.memoryEfficiency }

    /// Seconds an element-wise kernel (activation, top-k reduce, router, pack) that reads
    /// and writes `bytes` bytes in all costs: its launch plus the bytes over the achieved
    /// memory bandwidth.
    public func elementwiseSeconds(bytes: Int) -> Double {
        launchSeconds + Double(bytes) / achievedMemoryBandwidth
    }
}
