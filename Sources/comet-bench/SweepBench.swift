import ArgumentParser
import CometCore
import CometLaunch
import CometMPI
import CometMoE
import CometTelemetry
import Foundation

/// The paper's experiments scaled down to the CPU: the layer benchmark over
/// tokens per rank, experts and top-k, and token imbalance, each point with every
/// schedule side by side. Writes sweep.csv, sweep.json and one SVG of speedups per axis.
struct SweepBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Speedups over sequential against tokens per rank, E and top-k, and imbalance.",
        discussion: "Each point runs `comet-bench layer` with the other settings as given. Against the EP x TP "
            + "layout comes with tensor parallelism.")

    enum Axis: String, ExpressibleByArgument, CaseIterable {
        case tokens, experts, imbalance
    }

    @Option(help: "Axes to sweep (repeatable; default all).") var axis: [Axis] = Axis.allCases
    @Option(help: "Directory for sweep.csv, sweep.json and the SVGs.") var out = "sweep"
    @OptionGroup var options: LayerBenchOptions
    @OptionGroup var runtime: RuntimeOptions

    var linkIsEmulated: Bool { (try? options.setup.linkChoice(on: runtime.device)) != .native }
    var runsTimeOnly: Bool { true }

    func validate() throws { _ = try options.setup.linkChoice(on: runtime.device) }

    /// One schedule at one point; sweep.json adds its clock ("device" or "wall").
    struct Row: Encodable {
        let clock: String
        let axis: String
        let point: String
        let schedule: String
        let total_ms: Double
        let speedup: Double
        let hidden_fraction: Double
    }

    /// The points of `axis`: a label and the configuration to measure.
    func points(_ axis: Axis, _ base: MoEConfig) -> [(label: String, config: MoEConfig)] {
        switch axis {
        case .tokens:
            return [256, 512, 1024, 2048].map { tokens in
                var config = base
                config.tokensPerRank = tokens
                return ("\(tokens)", config)
            }
        case .experts:
            return [(8, 1), (8, 2), (8, 4), (16, 2)].map { experts, topK in
                var config = base
                (config.experts, config.topK) = (experts, topK)
                return ("E=\(experts) k=\(topK)", config)
            }
        case .imbalance:
            return [0, 0.01, 0.02, 0.032, 0.05].map { std in
                var config = base
                config.imbalance = std
                return ("std \(std)", config)
            }
        }
    }

    func run(on context: RankContext) throws {
        let world = context.world, device = context.device
        var rows: [Row] = []
        if world.rank == 0 { print(device.clock.reportLine) }
        for axis in self.axis {
            for (label, config) in points(axis, options.setup.moe.config) {
                guard (try? config.validate(expertParallel: world.size)) != nil else { continue }  // e.g. E not divisible by W
                let (report, _) = try options.benchmark(config, world: world, tensorParallel: options.setup.tp, device: device,
                                                        emulated: runtime.device, blas: context.blas.summary)
                for row in report?.rows ?? [] {
                    rows.append(Row(clock: device.clock.name, axis: axis.rawValue, point: label, schedule: row.schedule, total_ms: row.total_ms,
                                    speedup: row.speedup, hidden_fraction: row.hidden_fraction))
                }
                if world.rank == 0 { print("sweep \(axis.rawValue) \(label): done") }
            }
        }
        guard world.rank == 0 else { return }
        let directory = URL(fileURLWithPath: out)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw InputError("cannot create \(out): \(error.localizedDescription)")
        }
        let csv = (["axis,point,schedule,total_ms,speedup,hidden_fraction"] + rows.map {
            "\($0.axis),\($0.point),\($0.schedule),\(String(format: "%.2f", $0.total_ms)),\(String(format: "%.3f", $0.speedup)),"
                + String(format: "%.3f", $0.hidden_fraction)
        }).joined(separator: "\n") + "\n"
        try save(Data(csv.utf8), to: directory.appendingPathComponent("sweep.csv").path)
        try writeJSON(rows, to: directory.appendingPathComponent("sweep.json").path)
        let palette = ["#8c8c8c", "#55a868", "#c44e52", "#8172b2", "#dd8452"]
        for axis in self.axis {
            let own = rows.filter { $0.axis == axis.rawValue }
            let groups = Plots.orderedUnique(own.map(\.point)), schedules = Plots.orderedUnique(own.map(\.schedule))
            let series = schedules.enumerated().map { index, schedule in
                Plots.Series(name: schedule, points: groups.enumerated().map { g, point in
                    (Double(g), own.first { $0.point == point && $0.schedule == schedule }?.speedup ?? 0)
                }, color: schedule == "comet" ? "#4c72b0" : palette[index % palette.count])
            }
            let svg = Plots.groupedBars(title: "Speedup over sequential against \(axis.rawValue), forward + backward",
                                        yLabel: "speedup", groups: groups, series: series,
                                        level: Plots.Level(name: "sequential", y: 1, color: "#333333"))
            try save(Data(svg.utf8), to: directory.appendingPathComponent("sweep-\(axis.rawValue).svg").path)
        }
        print("comet-bench sweep: \(rows.count) rows in \(directory.path)/sweep.csv, sweep.json and sweep-*.svg")
    }
}
