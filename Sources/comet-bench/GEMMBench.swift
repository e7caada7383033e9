import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import Foundation

/// GEMM throughput per thread at the tile shapes of an MoE layer, against the
/// single-thread peak of the same kernel on this machine.
struct GEMMBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GEMM GFLOP/s per thread at MoE tile shapes against OpenBLAS's single-thread peak.",
        discussion: "Runs on rank 0 while any other rank waits idle. Shapes follow the default layer: "
            + "N=512, K=1024, 2048 rows routed to one expert.")

    @Option(help: "GEMM threads run at once for the concurrent column (default: one per core).")
    var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Seconds each measurement lasts.")
    var seconds = 0.4
    @Option(help: "Also write the figures to this JSON file.")
    var json: String?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
    }

    /// A GEMM of an MoE layer: C [m, n] = A [m, k] x B [k, n].
    struct Shape: Encodable {
        let name: String
        let m: Int, n: Int, k: Int
    }

    static let peakShape = Shape(name: "peak (square)", m: 1024, n: 1024, k: 1024)
    static let tileShapes = [
        Shape(name: "layer0 GEMM1 row tile", m: 128, n: 1024, k: 512),
        Shape(name: "layer0 GEMM1 small row tile", m: 32, n: 1024, k: 512),
        Shape(name: "layer1 GEMM2 column block", m: 2048, n: 128, k: 1024),
        Shape(name: "layer1 GEMM2 narrow column block", m: 2048, n: 64, k: 1024),
        Shape(name: "whole expert GEMM1", m: 2048, n: 1024, k: 512),
        Shape(name: "weight gradient", m: 1024, n: 512, k: 2048),
    ]

    struct Row: Encodable {
        let shape: Shape
        let single_thread_gflops: Double
        let per_thread_gflops: Double
        let threads: Int
        let single_thread_of_peak: Double
        let per_thread_of_peak: Double
    }

    struct Report: Encodable {
        let blas_core: String
        let peak_gflops: Double
        let peak_shape: Shape
        let rows: [Row]
    }

    func run(on context: RankContext) throws {
        let threads = self.threads, seconds = self.seconds
        var report: Report?
        _ = try SelfCheck.onRankZeroAlone(context.world) {
            // The best of three, so that a noisy neighbour does not lower the bar.
            let peak = (0..<3).map { _ in
                OpenBLAS.measureGFLOPs(m: Self.peakShape.m, n: Self.peakShape.n, k: Self.peakShape.k, seconds: seconds)
            }.max()!
            let rows = Self.tileShapes.map { shape in
                let single = OpenBLAS.measureGFLOPs(m: shape.m, n: shape.n, k: shape.k, seconds: seconds)
                let concurrent = Self.concurrentGFLOPs(shape, threads: threads, seconds: seconds, on: context.device.workers)
                return Row(shape: shape, single_thread_gflops: single, per_thread_gflops: concurrent, threads: threads,
                           single_thread_of_peak: single / peak, per_thread_of_peak: concurrent / peak)
            }
            report = Report(blas_core: context.blas.core, peak_gflops: peak, peak_shape: Self.peakShape, rows: rows)
            return peak
        }
        guard let report else { return }
        print("comet-bench gemm: \(context.blas.summary)")
        print(String(format: "single-thread peak %.1f GFLOP/s at 1024x1024x1024", report.peak_gflops))
        print("shape                              m     n     k  1 thread  of peak  \(threads) threads, per thread  of peak")
        for row in report.rows {
            print(padded(row.shape.name, 32) + String(format: " %5d %5d %5d  %8.1f  %6.0f%%  %24.1f  %6.0f%%",
                         row.shape.m, row.shape.n, row.shape.k,
                         row.single_thread_gflops, 100 * row.single_thread_of_peak,
                         row.per_thread_gflops, 100 * row.per_thread_of_peak))
        }
        if let json { try writeJSON(report, to: json) }
    }

    /// Mean GFLOP/s of `threads` threads running `shape` at once, each on its own operands.
    static func concurrentGFLOPs(_ shape: Shape, threads: Int, seconds: Double, on workers: WorkerPool) -> Double {
        let results = UnsafeMutableBufferPointer<Double>.allocate(capacity: threads)
        defer { results.deallocate() }
        let slots = SendableBuffer(results)
        try? workers.run(threads) { index in
            slots.buffer[index] = OpenBLAS.measureGFLOPs(m: shape.m, n: shape.n, k: shape.k, seconds: seconds)
        }
        return results.reduce(0, +) / Double(threads)
    }
}

/// A buffer whose elements distinct threads write, one element each.
struct SendableBuffer<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ buffer: UnsafeMutableBufferPointer<T>) { self.buffer = buffer }
}
