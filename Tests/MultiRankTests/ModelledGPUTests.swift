import Foundation
import XCTest

/// Runs on a modelled GPU (`--device h800`): every kernel and transfer costs what the
/// GPU's model says, so the layer bench repeats its device times to the last bit and
/// reports the GPU's time scale, comet's tiles costing their share of fused kernels;
/// the data are the host's arithmetic, the same as on the host device; wrong
/// combinations of flags get one line.
final class ModelledGPUTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-gpu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// `comet-bench layer` at a small shape with `flags` and `schedules`: the rows of its
    /// JSON by schedule.
    private func layer(
        _ name: String, _ flags: [String], schedules: [String] = ["sequential", "comet", "comet-rows"]
    ) throws -> [String: [String: Any]] {
        let json = directory.appendingPathComponent("\(name).json")
        let job = try MPIJob.run(ranks: 8, "comet-bench", [
            "layer", "--tokens", "256", "--model-width", "256", "--hidden-width", "512", "--iterations", "1", "--warmup", "0",
            "--json", json.path,
        ] + schedules.flatMap { ["--schedule", $0] } + flags)
        XCTAssertEqual(job.status, 0, job.transcript)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
        let rows = report["schedules"] as! [[String: Any]]
        return Dictionary(uniqueKeysWithValues: rows.map { ($0["schedule"] as! String, $0) })
    }

    func testLayerOnModelledH800RepeatsAndKeepsTheHostsData() throws {
        let first = try layer("h800-1", ["--device", "h800"]), second = try layer("h800-2", ["--device", "h800"])
        for schedule in ["sequential", "comet", "comet-rows"] {
            for key in ["forward_ms", "total_ms", "comm_ms", "gemm_ms", "output_digest"] {
                XCTAssertEqual("\(first[schedule]![key]!)", "\(second[schedule]![key]!)", "\(schedule): \(key)")
            }
        }
        // An H800's expert GEMMs at this shape take microseconds; this host's take milliseconds.
        let total = first["sequential"]!["total_ms"] as! Double
        XCTAssertLessThan(total, 2, "sequential's forward + backward on 8 modelled H800s")
        // comet's tiles and blocks are pieces of fused kernels: their GEMMs cost what sequential's grouped ones do,
        // slowed by the SMs comet's communication holds (h200_gemm_sm_split.csv: 2-3x for GEMMs this small).
        let gemm = { (schedule: String) in first[schedule]!["gemm_ms"] as! Double }
        for schedule in ["comet", "comet-rows"] {
            XCTAssertGreaterThan(gemm(schedule) / gemm("sequential"), 1.5, schedule)
            XCTAssertLessThan(gemm(schedule) / gemm("sequential"), 3.5, schedule)
        }
        let host = try layer("host", ["--link", "native"])
        XCTAssertEqual(first["sequential"]!["output_digest"] as? String, host["sequential"]!["output_digest"] as? String)
    }

    /// A time-only run computes and copies nothing, yet every schedule's device times are
    /// those of a computing run with the same (quota) routing, in both layouts.
    func testTimeOnlyGivesTheComputingRunsDeviceTimes() throws {
        let schedules = ["sequential", "chunked", "comet", "comet-rows"]
        for tp in ["1", "2"] {
            let flags = ["--device", "h800", "--tp", tp, "--chunks", "2", "--imbalance", "0.05"]
            let computed = try layer("computed-\(tp)", flags + ["--routing", "quotas"], schedules: schedules)
            let timed = try layer("timed-\(tp)", flags + ["--time-only"], schedules: schedules)
            for schedule in ["sequential", "chunked d=2", "comet", "comet-rows"] {
                for key in ["forward_ms", "backward_ms", "comm_ms", "gemm_ms"] {
                    XCTAssertEqual("\(computed[schedule]![key]!)", "\(timed[schedule]![key]!)", "TP=\(tp) \(schedule): \(key)")
                }
            }
        }
    }

    /// Training steps too: a time-only step (the model's attention, head, loss, gradient
    /// all-reduces and optimizer charged, not run) takes the device time of a computing
    /// one, with data-parallel expert replicas so that both gradient all-reduces run.
    func testTimeOnlyTrainingStepsGiveTheComputingRunsDeviceTimes() throws {
        let config = directory.appendingPathComponent("quotas.json")
        try Data(#"{"routing": "quotas"}"#.utf8).write(to: config)
        func e2e(_ name: String, _ flags: [String]) throws -> [String: [String: Any]] {
            let json = directory.appendingPathComponent("\(name).json")
            let job = try MPIJob.run(ranks: 8, "comet-bench", [
                "e2e", "--device", "h800", "--config", config.path, "--ep", "4", "--dp", "2", "--iterations", "1", "--warmup", "0",
                "--json", json.path,
            ] + flags)
            XCTAssertEqual(job.status, 0, job.transcript)
            let rows = (try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any])["schedules"] as! [[String: Any]]
            return Dictionary(uniqueKeysWithValues: rows.map { ($0["schedule"] as! String, $0) })
        }
        let (computed, timed) = (try e2e("computed", []), try e2e("timed", ["--time-only"]))
        for schedule in ["sequential", "chunked", "comet", "comet-rows"] {
            for key in ["step_ms", "moe_comm_ms", "moe_gemm_ms"] {
                XCTAssertEqual("\(computed[schedule]![key]!)", "\(timed[schedule]![key]!)", "\(schedule): \(key)")
            }
        }
    }

    /// The paper's 2-GPU check case repeats to the last digit, and its steps add up.
    func testPaperTwoGPUCaseRepeats() throws {
        func run(_ name: String) throws -> String {
            let out = directory.appendingPathComponent(name)
            let job = try MPIJob.run(ranks: 2, "comet-bench", ["paper", "--device", "h200", "--out", out.path])
            XCTAssertEqual(job.status, 0, job.transcript)
            return try String(contentsOf: out.appendingPathComponent("paper-h200-2gpu.csv"), encoding: .utf8)
        }
        let first = try run("first")
        XCTAssertEqual(first, try run("second"))
        let rows = first.split(separator: "\n").dropFirst().map { $0.split(separator: ",").dropFirst().compactMap { Double($0) } }
        XCTAssertEqual(rows.map { $0[0] }, [4096, 8192, 16384])
        for row in rows {
            let (dispatch, gemms, combine, total) = (row[1], row[2], row[3], row[4])
            XCTAssertGreaterThan(total, dispatch + gemms + combine, "sequential's steps run one after another")
            XCTAssertLessThan(total, 1.1 * (dispatch + gemms + combine), "and little else")
        }
    }

    func testTrainingOnModelledH800HasTheHostsLosses() throws {
        func train(_ name: String, _ flags: [String]) throws -> (losses: [Double], seconds: Double) {
            let run = directory.appendingPathComponent(name)
            let job = try MPIJob.run(ranks: 8, "comet-train", ["--progress", "lines", "--steps", "4", "--schedule", "sequential",
                                                              "--out", run.path] + flags)
            XCTAssertEqual(job.status, 0, job.transcript)
            let losses = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double }
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("summary.json")))
            return (losses, (summary as! [String: Any])["seconds"] as! Double)
        }
        let (h800, host) = (try train("h800", ["--device", "h800"]), try train("host", []))
        XCTAssertEqual(h800.losses, host.losses)
        XCTAssertLessThan(h800.seconds, host.seconds / 2, "8 modelled H800s against this host's device time")
    }

    func testWrongCombinationsGetOneLine() throws {
        let cases: [([String], String)] = [
            (["layer", "--device", "h800", "--clock", "wall"], "--device h800 charges every kernel from the GPU's model"),
            (["layer", "--link", "device"], "--link device is a modelled GPU's interconnect"),
            (["layer", "--device", "l20", "--link", "h800"], "with --device l20 the GEMMs are the GPU's: use --link device"),
            (["layer", "--time-only"], "--time-only charges every kernel from a modelled GPU's costs"),
            (["layer", "--device", "h200", "--time-only", "--routing", "learned"], "a time-only run routes by quotas"),
            (["paper"], "comet-bench paper runs on a modelled GPU"),
            (["paper", "--device", "h800", "--model", "gpt"], "--model takes mixtral, qwen2 or phi35"),
            (["window", "--device", "h800", "--time-only"], "window needs the values it computes"),
            (["layer", "--comm-sms", "8"], "--comm-sms divides a modelled GPU's SMs"),
            (["layer", "--device", "h800", "--comm-sms", "132"], "comet's communication SMs (--comm-sms) must leave the GEMMs"),
        ]
        for (arguments, message) in cases {
            let job = try MPIJob.run(ranks: 2, "comet-bench", arguments, timeout: 120)
            XCTAssertNotEqual(job.status, 0, job.transcript)
            XCTAssertEqual(job.errorLines(containing: message), 1, job.transcript)
        }
    }
}
