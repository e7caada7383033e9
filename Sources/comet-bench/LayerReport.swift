import CometCore
import CometDevices
import CometKernels
import CometMoE
import CometTelemetry
import Foundation

/// The figures of `comet-bench layer`: medians per schedule, compared with sequential,
/// every time on `clock`.
struct LayerReport {
    let variants: [String]
    /// How each variant's schedule cut its work.
    let tilings: [ScheduleTiling]
    /// How each variant's schedule divided the rank's engines.
    let engines: [EngineSplit]
    let samples: [[LayerBenchOptions.Sample]]
    let config: MoEConfig
    let options: ScheduleOptions
    let ranks: Int
    /// TP: ranks that share each expert's K dimension (EP = ranks / TP).
    let tensorParallel: Int
    let clock: any Clock
    let link: LinkModel
    let calibration: Calibration
    /// How the link was calibrated, in words (`Calibration.explanation`).
    let linkCalibration: String
    let peakRSSKiB: Int
    let blas: String
    /// Single-thread BLAS GFLOP/s at comet's layer0 tile shape, or the modelled GPU's
    /// peak (`gpu`), what the schedules' GEMM rates are compared with.
    let tileGFLOPs: Double
    /// The rows of that shape.
    let tileRows: Int
    /// The modelled GPU, if the device is one: GEMM rates are then on its clock.
    let gpu: GPUModel?
    /// Comet with and without its timeline recorded.
    let tracing: TracingOverhead?

    /// Medians of comet's forward + backward with the timeline recorded (what traces
    /// are made of) and without.
    struct TracingOverhead: Encodable {
        let traced_ms: Double
        let untraced_ms: Double
    }

    struct Row: Encodable {
        let schedule: String
        /// How it cut the work ("64-row tiles, column blocks 64+128+...").
        let tiling: ScheduleTiling
        /// How it divided the rank's engines.
        let engines: EngineSplit
        let forward_ms: Double
        let backward_ms: Double
        let total_ms: Double
        let comm_ms: Double
        let gemm_ms: Double
        /// The forward's share of comm_ms and gemm_ms.
        let forward_comm_ms: Double
        let forward_gemm_ms: Double
        /// Sequential's total time / this schedule's.
        let speedup: Double
        /// (T_sequential - T_schedule) / T_comm_sequential, as the Comet paper defines it.
        let hidden_fraction: Double
        /// GEMM FLOPs per CPU second of the GEMM threads, GFLOP/s.
        let gemm_gflops_per_thread: Double
        /// A digest of every rank's outputs and expert gradients after the last
        /// iteration (`outputDigest`), and whether every iteration gave the same.
        let output_digest: String
        let outputs_repeat: Bool
        /// Comet only: the least its structure allows with its own work (`StructureBound`).
        let structure_bound: StructureBound?
    }

    /// The least comet's structure (layer1 only after layer0) allows with its own
    /// measured work, the worst rank's, per pass (`cometPassBound`), with its speedups
    /// over sequential's passes and the share of it comet reaches (bound / comet's time).
    struct StructureBound: Encodable {
        let forward_ms: Double
        let backward_ms: Double
        let forward_speedup: Double
        let backward_speedup: Double
        let forward_share: Double
        let backward_share: Double
    }

    struct JSON: Encodable {
        /// "device" or "wall": the clock of every time.
        let clock: String
        let ranks: Int
        let expert_parallel: Int
        let tensor_parallel: Int
        let config: MoEConfig
        let options: ScheduleOptions
        let link: LinkModel
        let calibration: Calibration
        let link_calibration: String
        let peak_rss_kib_per_rank: Int
        let blas: String
        let single_thread_tile_gflops: Double
        let single_thread_tile_rows: Int
        let comet_tracing: TracingOverhead?
        /// The best any schedule could do with sequential's link time and CPU work (nil without sequential).
        let bound: Bound?
        let schedules: [Row]
    }

    var rows: [Row] {
        let medians = samples.map { runs in
            (forward: median(runs.map(\.forward)), backward: median(runs.map(\.backward)), comm: median(runs.map(\.comm)),
             gemm: median(runs.map(\.gemm)), forwardComm: median(runs.map(\.forwardComm)),
             forwardGEMM: median(runs.map(\.forwardGEMM)), rate: median(runs.map(\.gemmGFLOPs)),
             bound: runs.contains { $0.cometBound != nil }
                ? (forward: median(runs.compactMap { $0.cometBound?.forward }), backward: median(runs.compactMap { $0.cometBound?.backward }))
                : nil)
        }
        let baseline = variants.firstIndex(of: "sequential").map { medians[$0] }
        return variants.indices.map { index in
            let (name, m) = (variants[index], medians[index])
            let total = m.forward + m.backward
            let sequentialTotal = baseline.map { $0.forward + $0.backward } ?? .nan
            return Row(schedule: name, tiling: tilings[index], engines: engines[index], forward_ms: m.forward * 1e3,
                       backward_ms: m.backward * 1e3, total_ms: total * 1e3, comm_ms: m.comm * 1e3, gemm_ms: m.gemm * 1e3,
                       forward_comm_ms: m.forwardComm * 1e3, forward_gemm_ms: m.forwardGEMM * 1e3, speedup: sequentialTotal / total,
                       hidden_fraction: baseline.map { (sequentialTotal - total) / $0.comm } ?? .nan,
                       gemm_gflops_per_thread: m.rate,
                       output_digest: String(samples[index].last?.digest ?? 0, radix: 16),
                       outputs_repeat: Set(samples[index].map(\.digest)).count <= 1,
                       structure_bound: m.bound.map { bound in
                           StructureBound(forward_ms: bound.forward * 1e3, backward_ms: bound.backward * 1e3,
                                          forward_speedup: (baseline?.forward ?? .nan) / bound.forward,
                                          backward_speedup: (baseline?.backward ?? .nan) / bound.backward,
                                          forward_share: bound.forward / m.forward, backward_share: bound.backward / m.backward)
                       })
        }
    }

    var json: JSON {
        JSON(clock: clock.name, ranks: ranks, expert_parallel: ranks / tensorParallel, tensor_parallel: tensorParallel, config: config, options: options, link: link, calibration: calibration,
             link_calibration: linkCalibration, peak_rss_kib_per_rank: peakRSSKiB, blas: blas, single_thread_tile_gflops: tileGFLOPs,
             single_thread_tile_rows: tileRows, comet_tracing: tracing,
             bound: bound,
             schedules: rows)
    }

    /// How fast any schedule could be with sequential's link time and CPU work: each
    /// pass takes at least what its busiest link carries (a dispatch and a combine of
    /// the busiest rank pair's rows, on the link model) and at least its remaining
    /// work (sequential's pass time less that), whichever is longer. It has no term
    /// for the host's cores, so it holds on either clock.
    struct Bound: Encodable {
        let forward_ms: Double
        let backward_ms: Double
        let speedup: Double
        let hidden_fraction: Double
    }

    var bound: Bound? {
        guard let sequential = rows.first(where: { $0.schedule == "sequential" }) else { return nil }
        let linkMS = link.passTime(busiestLinkBytes: calibration.busiestLinkBytes(link.queues)) * 1e3
        let forward = max(linkMS, sequential.forward_ms - linkMS), backward = max(linkMS, sequential.backward_ms - linkMS)
        return Bound(forward_ms: forward, backward_ms: backward, speedup: sequential.total_ms / (forward + backward),
                     hidden_fraction: (sequential.total_ms - forward - backward) / sequential.comm_ms)
    }

    func print() {
        let timeOnly = ModelledKernels.isTimeOnly ? ", time-only (nothing computed)" : ""
        Swift.print("""
            comet-bench layer: \(ranks) ranks (EP=\(ranks / tensorParallel) x TP=\(tensorParallel)), T=\(config.tokensPerRank) N=\(config.modelWidth) K=\(config.hiddenWidth) \
            E=\(config.experts) top-k=\(config.topK) \(config.activation.rawValue), imbalance \(config.imbalance), \(config.routing.rawValue) routing\(timeOnly)
            \(clock.reportLine)
            link: \(link)
            link calibration: \(linkCalibration)
            \(EngineSplit.reportLine(Array(zip(variants, engines))))
            \(zip(variants, tilings).filter { $0.0 != "sequential" }.map { "\($0.0): \($0.1)" }.joined(separator: "; "))
            \(gpu.map { "GEMM rates: FLOPs over the GEMMs' device time, against the \($0.name)'s peak" } ?? "BLAS: \(blas); single-thread rate at the \(tileRows)-row tile shape")
            medians of \(samples.first?.count ?? 0) iterations, forward + backward:
            """)
        let u = TimeUnit(longestMilliseconds: rows.map(\.total_ms).max() ?? 0), n = u.name
        Swift.print("schedule          forward \(n)  backward \(n)  total \(n)  comm \(n)  gemm \(n)  speedup  hidden  GEMM GFLOP/s/\(gpu == nil ? "thread" : "engine")")
        for row in rows {
            Swift.print(padded(row.schedule, 16) + String(
                format: "  %10.1f  %11.1f  %8.1f  %7.1f  %7.1f  %6.2fx  %5.0f%%  %8.1f (%.0f%% of %.1f)",
                u(row.forward_ms), u(row.backward_ms), u(row.total_ms), u(row.comm_ms), u(row.gemm_ms), row.speedup,
                100 * row.hidden_fraction, row.gemm_gflops_per_thread, 100 * row.gemm_gflops_per_thread / tileGFLOPs, tileGFLOPs))
        }
        if let sequential = rows.first(where: { $0.schedule == "sequential" }) {
            Swift.print(String(format: """
                sequential's forward: communication %.1f %@ (%.0f%% of its %.1f %@; Megatron's in the paper: 47%%), expert GEMMs \
                %.1f %@, the busiest link's dispatch + combine %.1f %@
                """, u(sequential.forward_comm_ms), n, 100 * sequential.forward_comm_ms / sequential.forward_ms,
                u(sequential.forward_ms), n, u(sequential.forward_gemm_ms), n,
                u(link.passTime(busiestLinkBytes: calibration.busiestLinkBytes(link.queues)) * 1e3), n))
        }
        if let bound {
            Swift.print(String(format: """
                bound for any schedule (the busiest link's transfers and sequential's other work, perfectly overlapped): %.1f %@ forward + \
                %.1f %@ backward, %.2fx, hiding %.0f%%
                """, u(bound.forward_ms), n, u(bound.backward_ms), n, bound.speedup, 100 * bound.hidden_fraction))
            printBoundShares(rows.map { ($0.schedule, $0.speedup) }, bound: bound.speedup, after: structureLines(u))
        }
        if let tracing {
            Swift.print(String(format: "comet traced %.1f %@, untraced %.1f %@ (%+.1f%%): recording the timeline for traces",
                               u(tracing.traced_ms), n, u(tracing.untraced_ms), n, 100 * (tracing.traced_ms / tracing.untraced_ms - 1)))
        }
        Swift.print("peak RSS per rank: \(peakRSSKiB / 1024) MiB")
    }
}

extension LayerReport {
    /// The lines that follow each comet row's share of the bound: its structure's bound,
    /// if it has one, in `u`.
    func structureLines(_ u: TimeUnit) -> [String: String] {
        Dictionary(uniqueKeysWithValues: rows.compactMap { row in
            row.structure_bound.map { bound in
                (row.schedule, String(format: """
                    bound for %@'s structure (layer1 after layer0: max(work before the first GEMM + layer0's GEMMs, the last \
                    dispatch arrival) + max(layer1's GEMMs + the last block's push, the first block + the busiest link's combine) \
                    + the last reduce, the worst rank): %.1f %@ forward, %.2fx; %@ reaches %.0f%% of it; \
                    %.1f %@ backward, %.2fx; %@ reaches %.0f%% of it
                    """, row.schedule, u(bound.forward_ms), u.name, bound.forward_speedup, row.schedule, 100 * bound.forward_share,
                    u(bound.backward_ms), u.name, bound.backward_speedup, row.schedule, 100 * bound.backward_share))
            }
        })
    }

    /// One line per layout: each schedule's speedup over sequential (and sequential's time).
    static func printLayoutSummary(_ reports: [LayerReport]) {
        guard let first = reports.first else { return }
        Swift.print("speedup over sequential, forward + backward, by layout:")
        let u = TimeUnit(longestMilliseconds: reports.flatMap { $0.rows.map(\.total_ms) }.max() ?? 0)
        Swift.print(padded("layout", 12) + padded("sequential \(u.name)", 15) + first.variants.map { padded($0, 14) }.joined())
        for report in reports {
            let rows = report.rows
            let sequential = rows.first { $0.schedule == "sequential" }?.total_ms ?? .nan
            Swift.print(padded("EP=\(report.ranks / report.tensorParallel) TP=\(report.tensorParallel)", 12)
                + padded(String(format: "%.1f", u(sequential)), 15)
                + rows.map { padded(String(format: "%.2fx", $0.speedup), 14) }.joined())
        }
    }
}
