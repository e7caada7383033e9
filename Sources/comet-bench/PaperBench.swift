import ArgumentParser
import CometCore
import CometDevices
import CometLaunch
import CometMPI
import CometMoE
import CometTelemetry
import Foundation

/// The Comet paper's experiments on modelled GPUs, time-only: every schedule at the
/// paper's model sizes, each table printed beside the paper's figure and written as
/// CSV, JSON and SVG. On 8 ranks: the layer forward of three models over M and (TP, EP),
/// latency hiding, comet's SM split, sensitivity to E, top-k and imbalance, and the
/// whole model's forward + backward (`PaperEndToEnd`); on 2 ranks: the 2-GPU case to
/// check against real hardware.
struct PaperBench: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "paper",
        abstract: "The Comet paper's experiments on 8 modelled GPUs (or its 2-GPU check case on 2), time-only.",
        discussion: "Needs --device h800, h200 or l20; runs time-only (--time-only is implied). M is the whole layer's tokens: "
            + "each of the W ranks routes M / W (attention data parallel); in the 2-GPU case M is per rank. Chunked runs at "
            + "d = 2, 4, 8 and comet at each --comm-sms candidate; each table takes the best (lowest forward). The "
            + "end-to-end section times the whole model's forward + backward at M 4096 and 8192, each schedule at the "
            + "layer table's choice.")

    enum Section: String, ExpressibleByArgument, CaseIterable {
        /// The layer forward over models, M and layouts, with latency hiding and the SM split.
        case layer
        /// Speedups against E, top-k and imbalance.
        case sensitivity
        /// Forward + backward through the whole model.
        case e2e
    }

    @Option(help: "Sections to run on 8 ranks (repeatable; default all).") var section: [Section] = Section.allCases
    @Option(help: "Models of the layer section (repeatable: mixtral, qwen2, phi35; default all three).") var model: [String] = []
    @Option(help: "Comet's candidate communication SMs, comma-separated.") var commSms = "8,16,24,32,48"
    @Option(help: "Directory for paper-<device>.csv, .json and the SVGs.") var out = "paper"
    @OptionGroup var parsed: RuntimeOptions

    /// The options as given, always time-only.
    var runtime: RuntimeOptions {
        var options = parsed
        options.timeOnly = true
        return options
    }

    var linkIsEmulated: Bool { true }
    var runsTimeOnly: Bool { true }

    var candidates: [Int] { commSms.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    var models: [PaperModel] {
        model.isEmpty ? PaperModel.all : model.compactMap { key in PaperModel.all.first { $0.key == key.lowercased() } }
    }

    func validate() throws {
        guard parsed.device.gpu != nil else { throw ValidationError("comet-bench paper runs on a modelled GPU: give --device h800, h200 or l20") }
        guard !candidates.isEmpty, candidates.count == commSms.split(separator: ",").count, candidates.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--comm-sms takes positive whole numbers separated by commas, e.g. 8,16,24")
        }
        guard models.count == model.count || model.isEmpty else {
            throw ValidationError("--model takes mixtral, qwen2 or phi35; got \(model.joined(separator: ", "))")
        }
    }

    func run(on context: RankContext) throws {
        let world = context.world, gpu = parsed.device.gpu!
        let runs = PaperRuns(world: world, device: context.device, link: gpu.link, smCandidates: candidates)
        if world.rank == 0 { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
        switch world.size {
        case 8: try eightGPUs(runs, gpu: gpu)
        case 2: try TwoGPUCase(runs: runs, gpu: gpu, out: out).run()
        default: throw InputError("comet-bench paper runs on 8 ranks (8 GPUs) or 2 (the 2-GPU check case); got \(world.size)")
        }
    }

    /// The 8-GPU sections; rank 0 prints and writes.
    private func eightGPUs(_ runs: PaperRuns, gpu: GPUModel) throws {
        var rows: [PaperRow] = []
        let print = { (text: String) in if runs.world.rank == 0 { Swift.print(text) } }
        print("comet-bench paper: 8 x \(gpu.name), time-only; link \(gpu.link); comet's SM candidates \(commSms)\n")
        if section.contains(.layer) {
            let layer = try layerRows(runs, gpu: gpu)
            if runs.world.rank == 0 {
                PaperTables.printLayer(layer, gpu: gpu.name)
                Swift.print()
                PaperTables.printHiding(layer)
                Swift.print()
                PaperTables.printSMSplit(layer)
                Swift.print()
                for model in Plots.orderedUnique(layer.map(\.model)) {
                    let svg = PaperTables.speedupBars(layer.filter { $0.model == model }, title: "\(model), one MoE layer forward, "
                        + "8 x \(gpu.name)") { "\($0.tokens)/\($0.tp)x\($0.ep)" }
                    try save(Data(svg.utf8), to: "\(out)/paper-\(gpu.name)-layer-\(model.lowercased()).svg")
                }
            }
            rows += layer
        }
        if section.contains(.sensitivity) {
            let sensitivity = try sensitivityRows(runs, gpu: gpu)
            if runs.world.rank == 0 {
                PaperTables.printSensitivity(sensitivity)
                let svg = PaperTables.speedupBars(sensitivity, title: "Sensitivity, Mixtral's N and K, EP=8, M 8192, "
                    + "8 x \(gpu.name)") { "E\($0.experts) k\($0.top_k) s\($0.imbalance)" }
                try save(Data(svg.utf8), to: "\(out)/paper-\(gpu.name)-sensitivity.svg")
            }
            rows += sensitivity
        }
        if section.contains(.e2e) {
            let steps = try PaperEndToEnd(runs: runs, device: gpu.name).rows(models, layer: rows) { progress(runs, $0) }
            if runs.world.rank == 0 {
                print("")
                PaperTables.printEndToEnd(steps, gpu: gpu.name)
                try saveTable(steps, csvHeader: PaperStepRow.csvHeader, lines: steps.map(\.csvLine), as: "paper-\(gpu.name)-e2e")
                for model in Plots.orderedUnique(steps.map(\.model)) {
                    let svg = PaperTables.endToEndBars(steps.filter { $0.model == model }, title: "\(model), end to end "
                        + "(forward + backward), 8 x \(gpu.name)")
                    try save(Data(svg.utf8), to: "\(out)/paper-\(gpu.name)-e2e-\(model.lowercased()).svg")
                }
            }
        }
        guard runs.world.rank == 0 else { return }
        try saveTable(rows, csvHeader: PaperRow.csvHeader, lines: rows.map(\.csvLine), as: "paper-\(gpu.name)")
        Swift.print("\nwrote \(out)/paper-\(gpu.name)*.csv, .json and SVGs")
    }

    /// Writes `rows` as `out`/`name`.csv (`csvHeader`, then `lines`) and .json.
    private func saveTable(_ rows: some Encodable, csvHeader: String, lines: [String], as name: String) throws {
        try save(Data(([csvHeader] + lines).joined(separator: "\n").utf8 + [0x0A]), to: "\(out)/\(name).csv")
        try writeJSON(rows, to: "\(out)/\(name).json")
    }

    /// Every model at M 4096, 8192 and 16384 and (TP, EP) (1, 8), (2, 4), (4, 2), (8, 1). Collective.
    private func layerRows(_ runs: PaperRuns, gpu: GPUModel) throws -> [PaperRow] {
        var rows: [PaperRow] = []
        for model in models {
            for tokens in [4096, 8192, 16384] {
                for tp in [1, 2, 4, 8] {
                    let config = model.config(tokens: tokens, ranks: 8)
                    guard (try? config.validate(expertParallel: 8 / tp, tensorParallel: tp)) != nil else { continue }
                    progress(runs, "\(model.name) M \(tokens) TP \(tp)")
                    let point = PaperPoint(device: gpu.name, section: "layer", model: model, config: config, ranks: 8, tp: tp)
                    rows += point.rows(try runs.schedules(config, tp: tp))
                }
            }
        }
        return rows
    }

    /// Mixtral's N and K at EP=8, M 8192: E 8, 16, 32 (top-k 2); top-k 1 and 4 (E 8);
    /// imbalance 0.01 to 0.05 (E 8, top-k 2). Collective.
    private func sensitivityRows(_ runs: PaperRuns, gpu: GPUModel) throws -> [PaperRow] {
        let base = PaperModel.mixtral
        let shapes = [(8, 2, 0.0), (16, 2, 0.0), (32, 2, 0.0), (8, 1, 0.0), (8, 4, 0.0), (8, 2, 0.01), (8, 2, 0.02), (8, 2, 0.032),
                      (8, 2, 0.05)]
        var rows: [PaperRow] = []
        for (experts, topK, imbalance) in shapes {
            var model = base
            (model.experts, model.topK) = (experts, topK)
            let config = model.config(tokens: 8192, ranks: 8, imbalance: imbalance)
            progress(runs, "sensitivity E \(experts) top-k \(topK) imbalance \(imbalance)")
            let point = PaperPoint(device: gpu.name, section: "sensitivity", model: model, config: config, ranks: 8, tp: 1)
            rows += point.rows(try runs.schedules(config, tp: 1))
        }
        return rows
    }

    /// Says on standard error, from rank 0, which point runs next.
    private func progress(_ runs: PaperRuns, _ point: String) {
        if runs.world.rank == 0 { FileHandle.standardError.write(Data("  \(point)\n".utf8)) }
    }
}
