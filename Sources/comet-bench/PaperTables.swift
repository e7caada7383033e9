import CometMoE
import CometTelemetry
import Foundation

/// The tables of `comet-bench paper`, each printed beside the paper's figure it
/// reproduces, and their SVG bars.
enum PaperTables {
    static let colors = ["chunked": "#9e9e9e", "comet": "#1f77b4", "comet-rows": "#ff7f0e"]

    /// "1332.7 1.33x d=4": a chosen row's forward, speedup and setting.
    static func cell(_ row: PaperRow?) -> String {
        guard let row else { return "-" }
        return String(format: "%.1f %.2fx %@", row.forward_us, row.speedup, row.setting)
    }

    /// Per model: each point's sequential forward and the chosen schedules' (Figure 10 of
    /// the paper), then comet's speedups over the baselines.
    static func printLayer(_ rows: [PaperRow], gpu: String) {
        for model in Plots.orderedUnique(rows.map(\.model)) {
            print("\(model), one MoE layer forward on 8 x \(gpu), us (speedup over sequential, setting):")
            print(padded("M", 7) + padded("TPxEP", 7) + padded("sequential", 12) + padded("chunked", 22) + padded("comet", 24) + "comet-rows")
            for point in rows.filter({ $0.model == model }).points {
                guard let first = point.first else { continue }
                print(padded("\(first.tokens)", 7) + padded("\(first.tp)x\(first.ep)", 7)
                    + padded(String(format: "%.1f", point.chosen(.sequential)?.forward_us ?? .nan), 12)
                    + padded(cell(point.chosen(.chunked)), 22) + padded(cell(point.chosen(.comet)), 24) + cell(point.chosen(.cometRows)))
            }
        }
        for schedule in [ScheduleKind.comet, .cometRows] { printSpeedupSummary(rows, schedule) }
    }

    /// The schedule's speedups over each point's baselines (sequential, as Megatron,
    /// and chunked at its best, as Tutel): average and range, beside the paper's.
    static func printSpeedupSummary(_ rows: [PaperRow], _ schedule: ScheduleKind) {
        let speedups = rows.points.flatMap { point -> [Double] in
            guard let mine = point.chosen(schedule) else { return [] }
            return [ScheduleKind.sequential, .chunked].compactMap { point.chosen($0).map { $0.forward_us / mine.forward_us } }
        }
        guard !speedups.isEmpty else { return }
        print(String(format: "%@ over the baselines (sequential and chunked at its best, every point): average %.2fx, "
            + "%.2fx-%.2fx (paper, Comet over Megatron, FasterMoE and Tutel: 1.96x, 1.28x-2.37x)",
            schedule.rawValue, speedups.reduce(0, +) / Double(speedups.count), speedups.min()!, speedups.max()!))
    }

    /// Latency hiding at Mixtral's EP=8, E=8, top-k 2, M=16384 (the paper's Figure 12):
    /// the share of each schedule's forward communication that overlapped its GEMMs, and
    /// what its forward saved of sequential's communication time.
    static func printHiding(_ rows: [PaperRow]) {
        guard let point = rows.points.first(where: { $0.first?.tp == 1 && $0.first?.tokens == 16384 && $0.first?.experts == 8 }),
              let sequential = point.chosen(.sequential) else { return }
        print(String(format: "latency hiding, %@ EP=8 E=8 top-k 2 M=16384 (paper: Comet 86.5%%, Tutel 68.6%%, FasterMoE 29.2%%); "
            + "sequential's forward communication %.1f us of %.1f us:", sequential.model, sequential.forward_comm_us, sequential.forward_us))
        print("  schedule              overlapped with GEMMs  saved of sequential's communication")
        let chunked = point.filter { $0.schedule == ScheduleKind.chunked.rawValue && !$0.chosen }
        for row in [point.chosen(.comet), point.chosen(.cometRows), point.chosen(.chunked)].compactMap({ $0 }) + chunked {
            print(String(format: "  %@%21.1f%%  %35.1f%%", padded("\(row.schedule) \(row.setting)", 20), 100 * row.overlapped_fraction,
                         100 * row.hidden_fraction))
        }
    }

    /// Comet's best communication SMs as M grows at TP 8, and as TP shrinks at M 16384,
    /// for Mixtral (the paper: 18 -> 26 as M went 4096 -> 16384 at TP 8; 26 -> 46 as TP
    /// went 8 -> 4), each with its forward time at every candidate.
    static func printSMSplit(_ rows: [PaperRow]) {
        let mixtral = rows.points.filter { $0.first?.model == PaperModel.mixtral.name }
        let lines = mixtral.filter { $0.first?.tp == 8 } + mixtral.filter { $0.first?.tokens == 16384 && $0.first?.tp != 8 }.reversed()
        print("comet's best communication SMs, Mixtral (paper at TP 8: 18 at M 4096, 26 at 16384; at M 16384: 46 at TP 4); "
            + "forward us at each candidate:")
        for point in lines {
            guard let first = point.first, let best = point.chosen(.comet) else { continue }
            let curve = point.filter { $0.schedule == "comet" }.map { String(format: "%@ %.1f", $0.setting, $0.forward_us) }
            print("  M \(first.tokens) TP \(first.tp): \(best.setting) (\(curve.joined(separator: ", ")))")
        }
    }

    /// Speedups against E, top-k and imbalance (the paper's Figure 13: 1.16x-1.83x).
    static func printSensitivity(_ rows: [PaperRow]) {
        print("sensitivity, Mixtral's N and K, EP=8, M 8192, forward us (speedup over sequential, setting):")
        print(padded("E", 5) + padded("top-k", 7) + padded("imbalance", 11) + padded("sequential", 12) + padded("chunked", 22)
            + padded("comet", 24) + "comet-rows")
        for point in rows.points {
            guard let first = point.first else { continue }
            print(padded("\(first.experts)", 5) + padded("\(first.top_k)", 7) + padded("\(first.imbalance)", 11)
                + padded(String(format: "%.1f", point.chosen(.sequential)?.forward_us ?? .nan), 12)
                + padded(cell(point.chosen(.chunked)), 22) + padded(cell(point.chosen(.comet)), 24) + cell(point.chosen(.cometRows)))
        }
    }

    /// Per model: each point's forward + backward through the whole model, sequential's
    /// and the other schedules' with their speedups (the paper's Figure 11), then each
    /// comet variant's average over the baselines (the paper: 1.71x).
    static func printEndToEnd(_ rows: [PaperStepRow], gpu: String) {
        let cell = { (row: PaperStepRow?) in row.map { String(format: "%.1f %.2fx %@", $0.stepMS, $0.speedup, $0.setting) } ?? "-" }
        for model in Plots.orderedUnique(rows.map(\.model)) {
            let first = rows.first { $0.model == model }!
            print("\(model), end to end (forward + backward, \(first.layers) blocks, sequences of \(first.sequence_length)) on "
                + "8 x \(gpu), ms (speedup over sequential, setting), and the gradient sync after them:")
            print(padded("M", 7) + padded("TPxEP", 7) + padded("sequential", 12) + padded("chunked", 20) + padded("comet", 22)
                + padded("comet-rows", 22) + "grad sync")
            for point in rows.points where point[0].model == model {
                print(padded("\(point[0].tokens)", 7) + padded("\(point[0].tp)x\(point[0].ep)", 7)
                    + padded(String(format: "%.1f", point.of(.sequential)?.stepMS ?? .nan), 12) + padded(cell(point.of(.chunked)), 20)
                    + padded(cell(point.of(.comet)), 22) + padded(cell(point.of(.cometRows)), 22)
                    + String(format: "%.1f", point[0].gradient_sync_ms))
            }
        }
        for kind in [ScheduleKind.comet, .cometRows] {
            let speedups = rows.points.flatMap { point -> [Double] in
                guard let mine = point.of(kind) else { return [] }
                return [ScheduleKind.sequential, .chunked].compactMap { point.of($0).map { $0.stepMS / mine.stepMS } }
            }
            guard !speedups.isEmpty else { continue }
            print(String(format: "%@ end to end over the baselines (sequential and chunked, every point): average %.2fx, %.2fx-%.2fx "
                + "(paper: 1.71x on average)", kind.rawValue, speedups.reduce(0, +) / Double(speedups.count), speedups.min()!,
                speedups.max()!))
        }
    }

    /// Grouped bars of the schedules' end-to-end speedups over sequential, a group per point.
    static func endToEndBars(_ rows: [PaperStepRow], title: String) -> String {
        let points = rows.points
        let series = [ScheduleKind.chunked, .comet, .cometRows].map { kind in
            Plots.Series(name: kind.rawValue, points: points.enumerated().map { (x: Double($0.offset), y: $0.element.of(kind)?.speedup ?? 0) },
                         color: colors[kind.rawValue]!)
        }
        return Plots.groupedBars(title: title, yLabel: "speedup over sequential (forward + backward)",
                                 groups: points.map { "\($0[0].tokens)/\($0[0].tp)x\($0[0].ep)" }, series: series,
                                 level: Plots.Level(name: "sequential", y: 1, color: "#d62728"))
    }

    /// Grouped bars of the chosen schedules' speedups over sequential, a group per point.
    static func speedupBars(_ rows: [PaperRow], title: String, label: (PaperRow) -> String) -> String {
        let points = rows.points
        let series = [ScheduleKind.chunked, .comet, .cometRows].map { kind in
            Plots.Series(name: kind.rawValue, points: points.enumerated().map { (x: Double($0.offset), y: $0.element.chosen(kind)?.speedup ?? 0) },
                         color: colors[kind.rawValue]!)
        }
        return Plots.groupedBars(title: title, yLabel: "speedup over sequential (forward)", groups: points.map { label($0[0]) },
                                 series: series, level: Plots.Level(name: "sequential", y: 1, color: "#d62728"))
    }
}
