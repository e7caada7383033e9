import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import XCTest

/// `comet-train` end to end on live jobs: the run directory, resume, layout and
/// schedule independence, and bad input.
final class TrainingTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func train(ranks: Int, _ arguments: [String], timeout: Double = 240) throws -> MPIJob {
        try MPIJob.run(ranks: ranks, "comet-train", ["--progress", "lines"] + arguments, timeout: timeout)
    }

    /// (step, loss) of every line of a run's metrics.jsonl.
    private func losses(_ run: URL) throws -> [(step: Int, loss: Double)] {
        try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { line in
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                return (object["step"] as! Int, object["loss"] as! Double)
            }
    }

    func testRunDirectoryHoldsConfigMetricsSummaryAndCheckpoint() throws {
        let run = directory.appendingPathComponent("run")
        let job = try train(ranks: 4, ["--steps", "12", "--out", run.path])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("entropy floor"), job.transcript)
        let lines = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 12)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        for key in ["step", "loss", "aux_loss", "lr", "grad_norm", "clock", "step_ms", "wall_ms", "tokens_per_s", "comm_ms", "gemm_ms",
                    "expert_load"] {
            XCTAssertNotNil(first[key], "metrics lack \(key)")
        }
        XCTAssertEqual(first["clock"] as? String, "device")
        XCTAssertGreaterThan(first["wall_ms"] as! Double, 0)
        XCTAssertEqual((first["expert_load"] as! [Int]).count, 8)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("summary.json"))) as! [String: Any]
        for key in ["final_train_loss", "final_eval_loss", "entropy_floor", "unigram_entropy", "clock", "seconds", "tokens_per_s",
                    "wall_seconds", "wall_tokens_per_s", "schedule", "layout"] {
            XCTAssertNotNil(summary[key], "summary lacks \(key)")
        }
        XCTAssertEqual(summary["clock"] as? String, "device")
        XCTAssertTrue(job.stdout.contains("s of device time ("), job.transcript)
        XCTAssertLessThanOrEqual(summary["entropy_floor"] as! Double, (summary["unigram_entropy"] as! Double) / 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("config.json").path))
        for plot in ["loss.svg", "expert-load.svg"] {
            XCTAssertTrue(XMLParser(contentsOf: run.appendingPathComponent(plot))?.parse() == true, "\(plot) is not well-formed XML")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint.safetensors").path))
        try checkReadableFromPython(run.appendingPathComponent("checkpoint.safetensors"))
    }

    /// Python's safetensors reads the weights (skipped where it is not installed).
    private func checkReadableFromPython(_ checkpoint: URL, step: Int = 12) throws {
        try requirePythonSafetensors()
        let python = try runPython("""
            import sys
            from safetensors.numpy import load_file
            d = load_file(sys.argv[1])
            print(d["embedding"].shape, d["blocks.0.moe.experts.7.down"].shape, int(d["optimizer.step"][0]))
            """, [checkpoint.path])
        XCTAssertEqual(python.status, 0, "Python could not read the checkpoint")
        XCTAssertEqual(python.output, "(52, 64) (128, 64) \(step)")
    }

    /// N steps, a stop, then N more give exactly the losses of 2N steps in one go.
    func testResumeContinuesBitIdentically() throws {
        let (stopped, straight) = (directory.appendingPathComponent("stopped"), directory.appendingPathComponent("straight"))
        XCTAssertEqual(try train(ranks: 2, ["--steps", "12", "--stop-after", "6", "--out", stopped.path]).status, 0)
        let resumed = try train(ranks: 2, ["--resume", stopped.path])
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        XCTAssertEqual(try train(ranks: 2, ["--steps", "12", "--out", straight.path]).status, 0)
        let (a, b) = (try losses(stopped), try losses(straight))
        XCTAssertEqual(a.map(\.step), Array(1...12))
        XCTAssertEqual(a.map(\.loss), b.map(\.loss))
    }

    /// A checkpoint holds whole experts whatever the layout: a run stopped as EP=2 x TP=2
    /// continues as EP=4 x TP=1, on the same curve (within 1e-4).
    func testResumeInAnotherLayout() throws {
        let (stopped, straight) = (directory.appendingPathComponent("stopped"), directory.appendingPathComponent("straight"))
        XCTAssertEqual(try train(ranks: 4, ["--steps", "10", "--stop-after", "5", "--tp", "2", "--out", stopped.path]).status, 0)
        let resumed = try train(ranks: 4, ["--resume", stopped.path])
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        XCTAssertEqual(try train(ranks: 4, ["--steps", "10", "--out", straight.path]).status, 0)
        let (a, b) = (try losses(stopped), try losses(straight))
        XCTAssertEqual(a.map(\.step), Array(1...10))
        for (x, y) in zip(a.map(\.loss), b.map(\.loss)) { XCTAssertEqual(x, y, accuracy: 1e-4 * abs(y), "\(a) vs \(b)") }
        try checkReadableFromPython(stopped.appendingPathComponent("checkpoint.safetensors"), step: 10)
    }

    /// The same seed and global batch give the same losses within 1e-4 relative for
    /// 1, 2, 4 and 8 ranks, expert-, tensor- and data-parallel layouts, and every schedule.
    func testLossCurveDoesNotDependOnLayoutOrSchedule() throws {
        var curves: [String: [Double]] = [:]
        let runs: [(ranks: Int, schedule: String, layout: [String])] = [
            (1, "comet", []), (2, "sequential", []), (4, "chunked", []), (8, "comet", []), (8, "sequential", []),
            (8, "chunked", []), (8, "comet", ["--ep", "4", "--dp", "2"]),
            (2, "comet", ["--tp", "2"]), (4, "sequential", ["--ep", "2", "--tp", "2"]), (8, "chunked", ["--ep", "2", "--tp", "4"]),
            (8, "comet", ["--ep", "1", "--tp", "8"]), (8, "comet", ["--ep", "2", "--tp", "2", "--dp", "2"]),
            (8, "comet-rows", []), (4, "comet-rows", ["--ep", "2", "--tp", "2"]),
        ]
        for (ranks, schedule, layout) in runs {
            let run = directory.appendingPathComponent("\(ranks)-\(schedule)-\(layout.joined())")
            let job = try train(ranks: ranks, ["--steps", "8", "--schedule", schedule, "--out", run.path] + layout)
            XCTAssertEqual(job.status, 0, job.transcript)
            let name = ([("\(ranks) ranks")] + layout).joined(separator: " ") + ", \(schedule)"
            curves[name] = try losses(run).map(\.loss)
        }
        let reference = curves["1 ranks, comet"]!
        for (name, curve) in curves {
            for (x, y) in zip(curve, reference) {
                XCTAssertEqual(x, y, accuracy: 1e-4 * abs(y), "\(name) differs from 1 rank: \(curve) vs \(reference)")
            }
        }
    }

    /// `comet-train ARGUMENTS` on `ranks` ranks fails without hanging or crashing, and
    /// comet's only line of error output, from rank 0, contains `message`.
    private func expectFailure(_ arguments: [String], _ message: String, ranks: Int = 4,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let job = try train(ranks: ranks, arguments, timeout: 120)
        XCTAssertFalse(job.timedOut, "hung: \(job.transcript)", file: file, line: line)
        XCTAssertNotEqual(job.status, 0, job.transcript, file: file, line: line)
        XCTAssertEqual(job.cometErrorLines.count, 1, job.transcript, file: file, line: line)
        XCTAssertEqual(job.errorLines(containing: message), 1, job.transcript, file: file, line: line)
        XCTAssertFalse(job.stderr.contains("crashed") || job.stderr.contains("Fatal error"), job.transcript, file: file, line: line)
    }

    /// One clear message from rank 0, a non-zero exit, no hang, nothing half-written.
    func testBadInputGetsOneClearMessage() throws {
        let config = directory.appendingPathComponent("config.json")
        try #"{"steps": 3,"#.write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "does not parse as JSON: unexpected end of file during JSON parse "
                                                      + "(its last character is at line 1, column 12)")
        try "{\n  \"steps\": 3\n  \"layers\": 1\n}\n".write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "does not parse as JSON: invalid value at line 3, column 3")
        try "[3]".write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "is not a JSON object")
        try #"{"topK": 9}"#.write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "topK (9) cannot exceed experts (8)")
        try #"{"optimizer": {"learningRate": 0}}"#.write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "learning rate must be positive")
        try #"{"modelWidth": -8}"#.write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "modelWidth must be at least 1")
        try #"{"experts": 6}"#.write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--config", config.path], "6 experts cannot be shared out evenly over 4")
        try expectFailure(["--tp", "3"], "expertWidth (128) cannot be sharded evenly over 3", ranks: 3)
        try expectFailure(["--data", directory.appendingPathComponent("missing.txt").path], "does not exist")
        let empty = directory.appendingPathComponent("empty.txt")
        _ = FileManager.default.createFile(atPath: empty.path, contents: Data())
        try expectFailure(["--data", empty.path], "has 0 bytes")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["config.json", "empty.txt"],
                       "a failed start left files behind")

        // GEMM cost tables: missing, not a table, from another machine, a bad line, nowhere to save.
        let costs = directory.appendingPathComponent("costs.csv")
        try expectFailure(["--gemm-costs", costs.path], "cannot read the GEMM cost table \(costs.path)")
        try expectFailure(["--gemm-costs", empty.path], "is not a GEMM cost table")
        let header = "n,trans_a,trans_b,lda,ldb,ldc,accumulates,m,k,seconds"
        try "# machine: elsewhere/64 cores/SkylakeX\n\(header)\n".write(to: costs, atomically: true, encoding: .utf8)
        try expectFailure(["--gemm-costs", costs.path], "was sampled on elsewhere/64 cores/SkylakeX, not on this machine")
        try expectFailure(["--save-gemm-costs", directory.appendingPathComponent("missing/costs.csv").path], "does not exist")
        let sampling = try train(ranks: 2, ["--steps", "1", "--out", directory.appendingPathComponent("sampling").path,
                                            "--save-gemm-costs", costs.path])
        XCTAssertEqual(sampling.status, 0, sampling.transcript)
        let saved = try String(contentsOf: costs, encoding: .utf8)
        XCTAssertTrue(saved.contains(header), saved)
        try (saved + "512,N,X,512,512,512,0,64,512,0.001\n").write(to: costs, atomically: true, encoding: .utf8)
        try expectFailure(["--gemm-costs", costs.path], "not a GEMM cost: 512,N,X,512,512,512,0,64,512,0.001")
        try (saved + "kernel,seconds_per_element\ngelu forward,fast\n").write(to: costs, atomically: true, encoding: .utf8)
        try expectFailure(["--gemm-costs", costs.path], "not a kernel rate: gelu forward,fast")
        try expectFailure(["--host-cpu", "ignored"], "--host-cpu ignored needs an emulated link, and this run's rows move on the native link")

        // Checkpoints: corrupt, truncated, and from a model of another shape.
        let run = directory.appendingPathComponent("run")
        XCTAssertEqual(try train(ranks: 2, ["--steps", "2", "--out", run.path]).status, 0)
        let checkpoint = run.appendingPathComponent("checkpoint.safetensors")
        let good = try Data(contentsOf: checkpoint)
        try Data(good.prefix(good.count / 2)).write(to: checkpoint)
        try expectFailure(["--resume", run.path], "corrupt or truncated", ranks: 2)
        var garbled = good
        garbled.replaceSubrange(8..<40, with: Data(repeating: 0x7B, count: 32))
        try garbled.write(to: checkpoint)
        try expectFailure(["--resume", run.path], "corrupt or truncated", ranks: 2)
        try good.write(to: checkpoint)
        try #"{"modelWidth": 32, "steps": 4}"#.write(to: config, atomically: true, encoding: .utf8)
        try expectFailure(["--resume", run.path, "--config", config.path], "does not match this model", ranks: 2)
        XCTAssertEqual(try Data(contentsOf: checkpoint), good, "a failed resume changed the checkpoint")
    }

    /// An --out or --resume that cannot hold a run: one line from rank 0 naming the
    /// flag and the problem, a non-zero exit, and nothing written anywhere.
    func testRunDirectoryThatCannotHoldTheRunGetsOneLine() throws {
        let file = directory.appendingPathComponent("notes.txt")
        let contents = Data("not a run directory\n".utf8)
        try contents.write(to: file)
        try expectFailure(["--out", file.path], "comet-train: error: --out \(file.path) is a file, not a run directory", ranks: 2)
        XCTAssertEqual(try Data(contentsOf: file), contents, "--out changed the file")
        try expectFailure(["--out", file.appendingPathComponent("run").path],
                          "--out \(file.path)/run cannot be created: \(file.path) is a file, not a directory", ranks: 2)
        try expectFailure(["--resume", file.path], "--resume \(file.path) is a file, not a run directory", ranks: 2)
        let missing = directory.appendingPathComponent("missing").path
        try expectFailure(["--resume", missing], "--resume \(missing) does not exist", ranks: 2)
        try expectFailure(["--resume", directory.path], "--resume \(directory.path) holds no checkpoint.safetensors", ranks: 2)
        // Rank 0 meets what the checks cannot foresee (procfs refuses new entries even to
        // root) and tells the others, so the job still ends with one line.
        let proc = "/proc/comet-\(UUID().uuidString)"
        try expectFailure(["--out", proc, "--steps", "2"], proc, ranks: 2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["notes.txt"], "a failed start wrote files")
        XCTAssertEqual(try Data(contentsOf: file), contents, "a failed start changed the file")
    }
}
