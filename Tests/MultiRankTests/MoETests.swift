import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

/// The MoE layer on live jobs of 1 to 8 ranks: `comet-probe moe` checks every
/// schedule (sequential, chunked, comet, comet-rows) against the single-process reference,
/// forward and backward, twice in a row. Each job takes 1 to 5 s in a debug build.
final class MoETests: XCTestCase {
    /// The probe's layer: small enough for a debug build, with several tiles and
    /// column blocks per rank and three engines per rank (comet: one communicator and
    /// two GEMM engines); `flags` that follow override it.
    static let smallLayer = ["--tokens", "48", "--model-width", "40", "--hidden-width", "24", "--cores-per-rank", "3",
                             "--tile-rows", "5", "--block-columns", "16"]

    /// The probe's flags for `routing` (balanced, skewed or one-expert), and how it names it.
    static func routingFlags(_ routing: String) -> (flags: [String], name: String) {
        switch routing {
        case "skewed": (["--imbalance", "0.05"], "imbalance 0.05")
        case "one-expert": (["--one-expert"], "one-expert")
        default: ([], "balanced")
        }
    }

    /// `comet-probe moe` with `flags` on `ranks` ranks must pass, and say so for this routing and top-k.
    private func expectMoEPass(
        ranks: Int, tp: Int = 1, routing: String = "balanced", topK: Int = 2, _ flags: [String] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let routing = Self.routingFlags(routing)
        try expectPass(
            ranks: ranks,
            ["moe", "--tp", "\(tp)", "--top-k", "\(topK)", "--wait-timeout", "60"] + Self.smallLayer + routing.flags + flags,
            "moe: passed on \(ranks) ranks (EP=\(ranks / tp) x TP=\(tp)), schedules sequential,chunked,comet,comet-rows, "
                + "routing \(routing.name), top-k \(topK),",
            file: file, line: line)
    }

    func testEveryRankCount() throws {
        for ranks in [1, 2, 4, 8] {
            try expectMoEPass(ranks: ranks)
        }
    }

    /// Every routing with every top-k on 4 ranks (2 experts each); on 8 ranks the
    /// most lopsided case (every row to rank 0's one expert) and the widest.
    func testRoutingsAndTopK() throws {
        for routing in ["balanced", "skewed", "one-expert"] {
            for topK in [1, 2, 4] {
                try expectMoEPass(ranks: 4, routing: routing, topK: topK)
            }
        }
        try expectMoEPass(ranks: 8, routing: "one-expert", topK: 1)
        try expectMoEPass(ranks: 8, routing: "skewed", topK: 4)
    }

    /// The last rank routes no tokens but still holds experts; on 1 rank no rank has tokens.
    func testSilentRank() throws {
        try expectMoEPass(ranks: 1, ["--silent-rank"])
        try expectMoEPass(ranks: 2, routing: "one-expert", topK: 1, ["--silent-rank"])
        try expectMoEPass(ranks: 4, routing: "skewed", topK: 4, ["--silent-rank"])
        try expectMoEPass(ranks: 8, ["--silent-rank"])
    }

    /// MPI_Put / MPI_Get windows with MPI atomics, as across nodes.
    func testPutGetPath() throws {
        try expectMoEPass(ranks: 1, ["--force-put-get"])
        try expectMoEPass(ranks: 2, routing: "skewed", topK: 4, ["--force-put-get"])
        try expectMoEPass(ranks: 4, routing: "one-expert", ["--force-put-get", "--silent-rank"])
        try expectMoEPass(ranks: 8, routing: "skewed", ["--force-put-get"])
    }

    func testSwiGLU() throws {
        try expectMoEPass(ranks: 1, ["--activation", "swiglu"])
        try expectMoEPass(ranks: 4, routing: "skewed", topK: 4, ["--activation", "swiglu"])
        try expectMoEPass(ranks: 8, routing: "one-expert", ["--activation", "swiglu", "--force-put-get"])
    }

    /// A paced link: rows become usable only when the link model says they arrived.
    func testSlowLink() throws {
        try expectMoEPass(ranks: 2, routing: "one-expert", ["--slow-link", "--silent-rank"])
        try expectMoEPass(ranks: 4, routing: "skewed", ["--slow-link"])
        try expectMoEPass(ranks: 8, ["--slow-link", "--force-put-get"])
    }

    /// Results do not depend on engines and tiles: odd engine counts, tiles and
    /// blocks that do not divide the rows and columns, one-row tiles and one-column
    /// blocks, tiles and blocks larger than everything, one token per chunk, and
    /// more chunks than tokens.
    func testThreadsAndTiles() throws {
        let odd = ["--cores-per-rank", "6", "--comm-threads", "3", "--tile-rows", "3", "--block-columns", "7", "--chunks", "5"]
        try expectMoEPass(ranks: 4, odd)
        try expectMoEPass(ranks: 8, routing: "skewed", odd + ["--force-put-get"])
        try expectMoEPass(ranks: 2, ["--tile-rows", "1", "--block-columns", "1", "--chunks", "1"])
        try expectMoEPass(ranks: 4, routing: "skewed", topK: 4, ["--tile-rows", "500", "--block-columns", "64", "--chunks", "48"])
        try expectMoEPass(ranks: 4, routing: "one-expert", ["--tokens", "5", "--chunks", "8"])
    }

    /// Widths and counts that are not powers of two, several experts per rank.
    func testOddShapes() throws {
        try expectMoEPass(ranks: 4, topK: 3, ["--tokens", "7", "--model-width", "13", "--hidden-width", "9",
                                              "--experts", "12", "--chunks", "4", "--activation", "swiglu"])
        try expectMoEPass(ranks: 8, routing: "skewed", topK: 3, ["--experts", "16", "--tokens", "5", "--silent-rank"])
    }

    /// Expert tensor parallelism: every EP x TP layout of 2, 4 and 8 ranks, with
    /// skewed and one-expert routing, silent ranks, a paced link, the put/get path,
    /// SwiGLU (gate and up sharded alike) and odd threads and tiles.
    func testTensorParallelLayouts() throws {
        try expectMoEPass(ranks: 2, tp: 2, routing: "skewed", topK: 4, ["--silent-rank"])
        try expectMoEPass(ranks: 4, tp: 2, routing: "one-expert", ["--slow-link"])
        try expectMoEPass(ranks: 4, tp: 4, routing: "skewed", ["--activation", "swiglu"])
        try expectMoEPass(ranks: 8, tp: 2, routing: "skewed", topK: 4, ["--force-put-get", "--silent-rank"])
        try expectMoEPass(ranks: 8, tp: 4, ["--slow-link", "--activation", "swiglu"])
        try expectMoEPass(ranks: 8, tp: 8, routing: "one-expert", topK: 1,
                          ["--cores-per-rank", "5", "--gemm-threads", "3", "--tile-rows", "3", "--block-columns", "7"])
    }

    /// An engine budget that leaves comet without a GEMM engine, or that comet's split
    /// contradicts, is one line from rank 0 on every executable that configures schedules.
    func testAnEngineBudgetThatDoesNotFitIsOneLine() throws {
        let runs: [(String, [String], String)] = [
            ("comet-probe", ["moe", "--cores-per-rank", "2", "--comm-threads", "2"],
             "comet-probe: error: comet needs at least one communicator and one GEMM engine of the 2 engines per rank"),
            ("comet-bench", ["layer", "--cores-per-rank", "4", "--comm-threads", "1", "--gemm-threads", "2"],
             "comet-bench: error: comet's 1 communicator + 2 GEMM engines are not the 4 engines per rank"),
            ("comet-train", ["--cores-per-rank", "1", "--tuning", "model"],
             "comet-train: error: engines per rank (--cores-per-rank) must be 2 to 63"),
        ]
        for (program, flags, expected) in runs {
            let job = try MPIJob.run(ranks: 2, program, flags, timeout: 90)
            XCTAssertNotEqual(job.status, 0, job.transcript)
            XCTAssertEqual(job.cometErrorLines.count, 1, job.transcript)
            XCTAssertTrue(job.cometErrorLines.first?.hasPrefix(expected) == true, job.transcript)
        }
    }

    /// A protocol bug surfaces as the deadline report, never as a hang: the last
    /// rank never runs the comet schedule, so the others wait for it inside the
    /// schedule (not in a collective) until their 2 s deadline aborts the job.
    func testStalledRankEndsInADeadlineReport() throws {
        for (schedule, path) in [("comet", []), ("comet", ["--force-put-get"]), ("comet-rows", [])] {
            let job = try MPIJob.run(
                ranks: 4, "comet-probe", ["moe", "--schedule", schedule, "--stall-rank", "--wait-timeout", "2"] + Self.smallLayer + path,
                timeout: 90)
            XCTAssertFalse(job.timedOut, "the job hung: \(job.transcript)")
            XCTAssertNotEqual(job.status, 0, job.transcript)
            let reports = job.stderr.split(separator: "\n").filter { $0.contains("aborting the job") }
            XCTAssertTrue(reports.contains { $0.contains("waited 2.0 s") }, job.transcript)
            XCTAssertFalse(reports.contains { $0.contains("a peer never joined") }, "a collective timed out: \(job.transcript)")
            XCTAssertFalse(job.stderr.contains("crashed"), "the abort crashed: \(job.transcript)")
        }
    }
}

/// `comet-bench layer --trace`: a valid Chrome trace with the expected events on the
/// expected tracks, on the device clock (`--clock wall` names the host's clock), and
/// a report that says how the balanced link was calibrated.
final class TraceTests: XCTestCase {
    func testLayerBenchWritesAChromeTrace() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).trace.json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let job = try MPIJob.run(ranks: 2, "comet-bench", [
            "layer", "--tokens", "64", "--model-width", "32", "--hidden-width", "48", "--experts", "4", "--iterations", "1",
            "--warmup", "0", "--chunks", "2", "--link", "balanced", "--trace", path, "--gantt", path + ".svg",
        ])
        defer { try? FileManager.default.removeItem(atPath: path + ".svg") }
        XCTAssertTrue(XMLParser(contentsOf: URL(fileURLWithPath: path + ".svg"))?.parse() == true, "the Gantt SVG is not well-formed XML")
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(try String(contentsOfFile: path + ".svg", encoding: .utf8).contains("(device time)"), "the Gantt title lacks the clock")
        XCTAssertTrue(job.stdout.contains("link calibration: balanced: forward communication = forward expert GEMMs"), job.transcript)
        let trace = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        XCTAssertEqual((trace["otherData"] as? [String: String])?["clock"], "device")
        let events = trace["traceEvents"] as! [[String: Any]]
        let names = Set(events.filter { $0["ph"] as? String == "M" }.compactMap { ($0["args"] as? [String: String])?["name"] })
        XCTAssertTrue(names.isSuperset(of: ["rank 0", "rank 1"]), "\(names)")
        XCTAssertTrue(names.contains { $0.hasPrefix("GEMM thread") } && names.contains { $0.hasPrefix("communicator thread") }, "\(names)")
        let comet = events.filter { ($0["cat"] as? String)?.contains("comet") == true }
        for (kind, half) in [("comm", "layer0"), ("gemm", "layer0"), ("comm", "layer1"), ("gemm", "layer1"), ("local", "layer1")] {
            XCTAssertTrue(comet.contains { ($0["cat"] as! String).hasPrefix(kind) && ($0["args"] as? [String: String])?["half"] == half },
                          "no comet \(kind) event in \(half)")
        }
        for pid in [0, 1] { XCTAssertTrue(comet.contains { $0["pid"] as? Int == pid }, "no events from rank \(pid)") }
        XCTAssertTrue(events.contains { ($0["cat"] as? String)?.contains("sequential") == true })
        XCTAssertTrue(events.allSatisfy { ($0["ts"] as? Double ?? 0) >= 0 })
    }

    func testLayerBenchOnTheWallClockSaysSo() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let job = try MPIJob.run(ranks: 2, "comet-bench", [
            "layer", "--tokens", "64", "--model-width", "32", "--hidden-width", "48", "--experts", "4", "--iterations", "1",
            "--warmup", "0", "--chunks", "2", "--link", "native", "--clock", "wall", "--json", path,
        ])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("\nclock: wall (this host's"), job.transcript)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        XCTAssertEqual(report["clock"] as? String, "wall")
        XCTAssertNotNil(report["schedules"] as? [[String: Any]])
    }
}

/// Adaptive workload assignment end to end: `comet-bench tune` writes a table for
/// every layout of 2 ranks; `comet-bench layer --tuning` uses its entry for the
/// same shape and falls back to the cost model for another.
final class TuneTests: XCTestCase {
    func testTuneWritesATableThatLayerRunsLookUp() throws {
        let table = FileManager.default.temporaryDirectory.appendingPathComponent("comet-tuning-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: table) }
        let shape = ["--tokens", "64", "--model-width", "32", "--hidden-width", "48", "--experts", "4", "--iterations", "1", "--warmup", "0"]
        let tune = try MPIJob.run(ranks: 2, "comet-bench", ["tune", "--layouts", "all", "--table", table] + shape)
        XCTAssertEqual(tune.status, 0, tune.transcript)
        XCTAssertEqual(tune.stdout.components(separatedBy: "  chosen: ").count - 1, 2, "one choice per layout: \(tune.transcript)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: table))) as! [String: Any]
        let keys = (json["entries"] as! [[String: Any]]).map { $0["key"] as! [String: Any] }
        XCTAssertEqual(Set(keys.map { "\($0["expertParallel"]!)x\($0["tensorParallel"]!)" }), ["2x1", "1x2"])
        XCTAssertTrue(keys.allSatisfy { $0["clock"] as? String == "device, host CPU ignored" && $0["coresPerRank"] as? Int == 2 },
                      "\(keys)")

        let layer = ["layer", "--tuning", table, "--tp", "2", "--chunks", "2"]
        let measured = try MPIJob.run(ranks: 2, "comet-bench", layer + shape)
        XCTAssertEqual(measured.status, 0, measured.transcript)
        XCTAssertTrue(measured.stdout.contains("comet tuned: ") && measured.stdout.contains("; measured:"), measured.transcript)
        XCTAssertTrue(measured.stdout.contains("\ncomet tuned "), "no row for the tuned split: \(measured.transcript)")
        let modelled = try MPIJob.run(ranks: 2, "comet-bench", layer + shape + ["--top-k", "1"])
        XCTAssertEqual(modelled.status, 0, modelled.transcript)
        XCTAssertTrue(modelled.stdout.contains("; cost model (no tuning-table entry"), modelled.transcript)
    }
}

/// `comet-bench sweep`: CSV, JSON and a well-formed SVG per axis.
final class SweepTests: XCTestCase {
    func testSweepWritesItsFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-sweep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let job = try MPIJob.run(ranks: 2, "comet-bench", [
            "sweep", "--axis", "imbalance", "--model-width", "32", "--hidden-width", "48", "--tokens", "64", "--experts", "4",
            "--iterations", "1", "--warmup", "0", "--chunks", "2", "--link", "native", "--out", directory.path,
        ])
        XCTAssertEqual(job.status, 0, job.transcript)
        let csv = try String(contentsOf: directory.appendingPathComponent("sweep.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "axis,point,schedule,total_ms,speedup,hidden_fraction")
        XCTAssertEqual(csv.count, 1 + 5 * 4, "5 imbalance points x 4 schedules")
        XCTAssertTrue(XMLParser(contentsOf: directory.appendingPathComponent("sweep-imbalance.svg"))?.parse() == true)
        let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("sweep.json"))) as? [[String: Any]]
        XCTAssertEqual(rows?.count, 5 * 4)
        XCTAssertTrue(rows?.allSatisfy { $0["clock"] as? String == "device" } == true, "sweep.json rows lack their clock")
    }
}

/// `comet-bench e2e`: every schedule trains the same configuration in one run, and the
/// report holds their throughputs, their CPU use, the bound any schedule has and how
/// the link (here the whole-pass calibration) was calibrated.
final class E2EBenchTests: XCTestCase {
    func testE2EReportsEverySchedule() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("config.json"), json = directory.appendingPathComponent("e2e.json")
        try Data(#"{"modelWidth": 32, "expertWidth": 48, "sequenceLength": 16, "globalBatch": 4, "experts": 4}"#.utf8).write(to: config)
        let job = try MPIJob.run(ranks: 2, "comet-bench", [
            "e2e", "--config", config.path, "--iterations", "2", "--warmup", "1", "--link", "balanced-pass", "--json", json.path,
        ])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("\nclock: device (each rank's threads are engines"), job.transcript)
        XCTAssertTrue(job.stdout.contains("bound for any schedule") && job.stdout.contains("no host-core term on device time"),
                      job.transcript)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
        XCTAssertEqual(report["clock"] as? String, "device")
        XCTAssertEqual((report["link"] as! [String: Any])["name"] as? String, "balanced-pass")
        XCTAssertTrue((report["link_calibration"] as! String).hasPrefix("balanced-pass: forward + backward communication"))
        let rows = report["schedules"] as! [[String: Any]]
        XCTAssertEqual(rows.map { $0["schedule"] as! String }, ["sequential", "chunked", "comet", "comet-rows"])
        for row in rows {
            XCTAssertGreaterThan(row["tokens_per_s"] as! Double, 0)
            XCTAssertGreaterThan(row["cpu_ms"] as! Double, 0)
        }
        let bound = report["bound"] as! [String: Any]
        XCTAssertGreaterThanOrEqual(bound["speedup"] as! Double, 1)
        XCTAssertGreaterThan(bound["link_ms"] as! Double, 0)
        // The gradient all-reduce costs something on an emulated link, and no schedule hides it.
        let sync = bound["sync_ms"] as! Double
        XCTAssertGreaterThan(sync, 0, "the gradient all-reduce is free on an emulated link")
        XCTAssertGreaterThanOrEqual(bound["step_ms"] as! Double, (bound["link_ms"] as! Double) + sync)
        XCTAssertNil(bound["cores"], "a bound on device time has no host-core term")
    }
}

/// Device time does not follow the host. The layer bench on an emulated link with
/// the host's CPU ignored (`--host-cpu ignored`: only GEMMs, element-wise kernels and
/// the link advance device time) and kernel costs from a table that a first run
/// sampled (`--save-gemm-costs`), run once with both cores kept busy by other
/// processes (which doubles wall time) and once without, gives every schedule the
/// same device-time totals to the last bit, and the same outputs and gradients bit
/// for bit: comet's choices of what to compute next follow device time alone (the
/// benches' default on an emulated link). With the host's CPU charged (comet-train's
/// and the native link's), sequential's total stays within 10% (debug
/// builds, whose Swift glue is a far larger share of the CPU than in release; the
/// benchmark holds 5% in release: docs/moe.md).
final class DeviceTimeTests: XCTestCase {
    func testDeviceTimeIgnoresHostLoad() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-device-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let costs = directory.appendingPathComponent("costs.csv").path
        let schedules = ["sequential", "comet", "comet-rows"]
        func run(_ name: String, _ flags: [String]) throws -> [String: [String: Any]] {
            let json = directory.appendingPathComponent("\(name).json")
            let job = try MPIJob.run(ranks: 8, "comet-bench", [
                "layer", "--link", "balanced", "--tokens", "256", "--model-width", "256", "--hidden-width", "512", "--iterations", "2",
                "--json", json.path,
            ] + flags)
            XCTAssertEqual(job.status, 0, job.transcript)
            if flags.contains("--gemm-costs"), !flags.contains("--save-gemm-costs") {
                XCTAssertFalse(job.stdout.contains("note: "), "a run sampled what the table lacked: \(job.transcript)")
            }
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
            XCTAssertEqual(report["clock"] as? String, "device")
            let rows = report["schedules"] as! [[String: Any]]
            return Dictionary(uniqueKeysWithValues: rows.map { ($0["schedule"] as! String, $0) })
        }
        let ignored = ["--host-cpu", "ignored", "--warmup", "0"] + schedules.flatMap { ["--schedule", $0] }
        _ = try run("sample", ignored + ["--save-gemm-costs", costs])
        // Runs on the table choose as its costs say, which may need sizes the sampling run did not: sample those too.
        _ = try run("complete", ignored + ["--gemm-costs", costs, "--save-gemm-costs", costs])
        XCTAssertTrue(try String(contentsOfFile: costs, encoding: .utf8).contains("\nkernel,seconds_per_element\ngelu backward,"))
        let charged = ["--host-cpu", "charged", "--schedule", "sequential", "--gemm-costs", costs]
        let quiet = try run("quiet", ignored + ["--gemm-costs", costs]), quietCharged = try run("quiet-charged", charged)
        let spinners = try (0..<2).map { _ in try Process.run(URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", "while :; do :; done"]) }
        defer { for spinner in spinners { spinner.terminate() } }
        let loaded = try run("loaded", ignored + ["--gemm-costs", costs]), loadedCharged = try run("loaded-charged", charged)
        for schedule in schedules {
            for key in ["forward_ms", "total_ms", "comm_ms", "gemm_ms", "output_digest"] {
                XCTAssertEqual("\(quiet[schedule]![key]!)", "\(loaded[schedule]![key]!)", "\(schedule): \(key)")
            }
            XCTAssertEqual(quiet[schedule]!["outputs_repeat"] as? Bool, true, schedule)
        }
        let (a, b) = (quietCharged["sequential"]!["total_ms"] as! Double, loadedCharged["sequential"]!["total_ms"] as! Double)
        XCTAssertEqual(b / a, 1, accuracy: 0.1, "sequential, host CPU charged: \(a) ms quiet, \(b) ms loaded")
        XCTAssertEqual(quietCharged["sequential"]!["output_digest"] as? String, loadedCharged["sequential"]!["output_digest"] as? String)
    }
}
