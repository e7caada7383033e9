import CometKernels
@testable import CometTraining
import TestSupport
import Foundation
import XCTest

final class MarkovLanguageTests: XCTestCase {
    let language = MarkovLanguage(sources: 4, dataTokens: 48, successors: 3, seed: 7)

    /// The floor is worth reaching: at most half the context-free (unigram) entropy.
    func testFloorIsAtMostHalfTheUnigramEntropy() {
        let floor = language.entropyFloor(length: 64), unigram = language.unigramEntropy(length: 64)
        XCTAssertGreaterThan(floor, 0)
        XCTAssertLessThanOrEqual(floor, unigram / 2, "floor \(floor) nats, unigram \(unigram) nats")
    }

    /// The exact floor against a Monte-Carlo estimate: the mean of -log p(next | previous, source)
    /// over sampled sequences (standard error about 0.01 nats with 2000 sequences).
    func testFloorMatchesSampledSequences() {
        var generator = SeededGenerator(seed: 99)
        let length = 32
        var total = 0.0, count = 0
        for _ in 0..<2000 {
            let tokens = language.sample(length: length, &generator).map(Int.init)
            let source = tokens[0] - language.dataTokens
            total -= log(language.start[source][tokens[1]])
            for position in 2..<length {
                let edge = language.transitions[source][tokens[position - 1]].first { $0.token == tokens[position] }
                total -= log(edge!.probability)
            }
            count += length - 1
        }
        XCTAssertEqual(total / Double(count), language.entropyFloor(length: length), accuracy: 0.05)
    }

    func testSequencesStartWithTheirSourcesMarker() {
        var generator = SeededGenerator(seed: 1)
        for _ in 0..<20 {
            let tokens = language.sample(length: 10, &generator)
            XCTAssertEqual(tokens.count, 10)
            XCTAssertGreaterThanOrEqual(Int(tokens[0]), language.dataTokens)
            XCTAssertTrue(tokens.dropFirst().allSatisfy { Int($0) < language.dataTokens })
        }
    }
}

final class SafetensorsTests: XCTestCase {
    let tensors = [
        Safetensors.Tensor(name: "a", shape: [2, 3], values: .float32([1, 2, 3, 4, 5, -6.5])),
        Safetensors.Tensor(name: "step", shape: [1], values: .int64([42])),
    ]

    func testRoundTripThroughAFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Safetensors.write(tensors, metadata: ["format": "pt"], to: url)
        let (read, metadata) = try Safetensors.read(from: url)
        XCTAssertEqual(read["a"], tensors[0])
        XCTAssertEqual(read["step"], tensors[1])
        XCTAssertEqual(metadata, ["format": "pt"])
    }

    func testCorruptAndTruncatedFilesAreRejected() throws {
        let data = try Safetensors.encode(tensors)
        XCTAssertThrowsError(try Safetensors.decode(data.prefix(5)))
        XCTAssertThrowsError(try Safetensors.decode(data.prefix(data.count - 4)))
        var garbled = data
        garbled[10] = 0x7B  // breaks the JSON
        garbled[11] = 0x7B
        XCTAssertThrowsError(try Safetensors.decode(garbled))
        var huge = data
        huge[7] = 0x7F  // header length far beyond the file
        XCTAssertThrowsError(try Safetensors.decode(huge))
    }
}

final class AdamWTests: XCTestCase {
    func testScheduleWarmsUpThenDecaysToTheFloor() {
        var config = OptimizerConfig()
        (config.learningRate, config.warmupSteps, config.minLearningRateFraction) = (1, 10, 0.1)
        XCTAssertEqual(config.learningRate(step: 0, totalSteps: 100), 0.1, accuracy: 1e-6)
        XCTAssertEqual(config.learningRate(step: 9, totalSteps: 100), 1, accuracy: 1e-6)
        XCTAssertEqual(config.learningRate(step: 100, totalSteps: 100), 0.1, accuracy: 1e-6)
        XCTAssertEqual(config.learningRate(step: 55, totalSteps: 100), 0.55, accuracy: 1e-6)
    }

    /// Two steps on one decayed and one undecayed parameter, against the formulas by hand.
    func testUpdateMatchesTheFormulas() {
        var config = OptimizerConfig()
        (config.beta1, config.beta2, config.epsilon, config.weightDecay) = (0.9, 0.99, 0, 0.5)
        let parameters = ParameterSet([("w", [1], true, true), ("g", [1], false, true)])
        parameters.values[0] = 1
        parameters.values[1] = 1
        let optimizer = AdamW(config: config, parameterCount: parameters.count)
        parameters.gradients[0] = 2
        parameters.gradients[1] = 2
        optimizer.update(parameters, learningRate: 0.1, gradientScale: 0.5)
        // m = 0.1, v = 0.01, bias-corrected: 1 and 1 -> step 0.1 * 1 / 1; decay 0.1 * 0.5 * 1.
        XCTAssertEqual(parameters.values[0], 1 - 0.1 - 0.05, accuracy: 1e-6)
        XCTAssertEqual(parameters.values[1], 1 - 0.1, accuracy: 1e-6)
        XCTAssertEqual(optimizer.step, 1)
        XCTAssertEqual(optimizer.clipScale(globalNorm: 4), 0.25)
        XCTAssertEqual(optimizer.clipScale(globalNorm: 0.5), 1)
    }
}

/// Files that Python's `safetensors` reads and writes (skipped where it is not installed).
final class SafetensorsInteropTests: XCTestCase {
    func testPythonReadsOurFilesAndWeReadPythons() throws {
        try requirePythonSafetensors()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let ours = directory.appendingPathComponent("ours.safetensors"), theirs = directory.appendingPathComponent("theirs.safetensors")
        try Safetensors.write([Safetensors.Tensor(name: "w", shape: [2, 2], values: .float32([1, 2, 3, 4.5])),
                               Safetensors.Tensor(name: "step", shape: [1], values: .int64([3]))], to: ours)
        let python = try runPython("""
            import sys, numpy as np
            from safetensors.numpy import load_file, save_file
            d = load_file(sys.argv[1])
            print(d["w"].dtype, d["w"].shape, d["w"].ravel().tolist(), d["step"].tolist())
            save_file({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, sys.argv[2])
            """, [ours.path, theirs.path])
        XCTAssertEqual(python.status, 0, "Python could not read our file")
        XCTAssertEqual(python.output, "float32 (2, 2) [1.0, 2.0, 3.0, 4.5] [3]")
        let (tensors, _) = try Safetensors.read(from: theirs)
        XCTAssertEqual(tensors["x"], Safetensors.Tensor(name: "x", shape: [2, 3], values: .float32([0, 1, 2, 3, 4, 5])))
    }
}

final class DataSourceTests: XCTestCase {
    /// A global batch is the same however ranks split it.
    func testSequencesDoNotDependOnHowRanksSplitTheBatch() throws {
        let language = MarkovLanguage(sources: 3, dataTokens: 20, successors: 2, seed: 5)
        let whole = language.sequences(step: 7, first: 0, count: 8, length: 12, evaluation: false)
        let halves = language.sequences(step: 7, first: 0, count: 4, length: 12, evaluation: false)
            + language.sequences(step: 7, first: 4, count: 4, length: 12, evaluation: false)
        XCTAssertEqual(whole, halves)
        XCTAssertNotEqual(whole, language.sequences(step: 8, first: 0, count: 8, length: 12, evaluation: false))
        XCTAssertNotEqual(whole, language.sequences(step: 7, first: 0, count: 8, length: 12, evaluation: true))
    }

    func testByteTextReadsWindowsAndRejectsMissingOrShortFiles() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data((0..<1000).map { UInt8($0 % 251) }).write(to: url)
        let text = try ByteText(path: url.path, length: 16)
        let training = text.sequences(step: 0, first: 0, count: 5, length: 16, evaluation: false)
        XCTAssertEqual(training.count, 80)
        XCTAssertTrue(training.allSatisfy { (0..<256).contains(Int($0)) })
        XCTAssertThrowsError(try ByteText(path: url.path + ".missing", length: 16)) {
            XCTAssertTrue("\($0)".contains("does not exist"))
        }
        XCTAssertThrowsError(try ByteText(path: url.path, length: 200)) { XCTAssertTrue("\($0)".contains("at least")) }
    }
}

final class TrainConfigTests: XCTestCase {
    private func load(_ json: String) throws -> TrainConfig {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try json.write(to: url, atomically: true, encoding: .utf8)
        return try TrainConfig.load(from: url.path)
    }

    func testSavedDefaultsLoadBackAndPartialFilesKeepDefaults() throws {
        let defaults = TrainConfig()
        XCTAssertEqual(try load(String(decoding: defaults.json(), as: UTF8.self)), defaults)
        var expected = defaults
        expected.steps = 7
        expected.optimizer.learningRate = 0.5
        expected.scheduleOptions.tileRows = 32
        XCTAssertEqual(try load(#"{"steps": 7, "optimizer": {"learningRate": 0.5}, "scheduleOptions": {"tileRows": 32}}"#), expected)
    }

    func testBadFilesAndValuesGetClearMessages() throws {
        XCTAssertThrowsError(try load("[1, 2]")) { XCTAssertTrue("\($0)".contains("is not a JSON object"), "\($0)") }
        XCTAssertThrowsError(try load(#"{"stepz": 3}"#)) { XCTAssertTrue("\($0)".contains("unknown configuration key stepz")) }
        XCTAssertThrowsError(try load(#"{"steps": "many"}"#)) { XCTAssertTrue("\($0)".contains("steps")) }
        XCTAssertThrowsError(try TrainConfig.load(from: "/nonexistent/comet.json")) { XCTAssertTrue("\($0)".contains("does not exist")) }
        var config = TrainConfig()
        config.topK = 9
        XCTAssertThrowsError(try config.validate(ranks: 8, expertParallel: 8)) { XCTAssertTrue("\($0)".contains("topK")) }
        config = TrainConfig()
        config.experts = 6
        XCTAssertThrowsError(try config.validate(ranks: 8, expertParallel: 8)) { XCTAssertTrue("\($0)".contains("shared out evenly")) }
        config = TrainConfig()
        config.optimizer.learningRate = 0
        XCTAssertThrowsError(try config.validate(ranks: 8, expertParallel: 8)) { XCTAssertTrue("\($0)".contains("learning rate")) }
        config = TrainConfig()
        config.modelWidth = -4
        XCTAssertThrowsError(try config.validate(ranks: 8, expertParallel: 8)) { XCTAssertTrue("\($0)".contains("modelWidth")) }
        XCTAssertNoThrow(try TrainConfig().validate(ranks: 8, expertParallel: 8))
    }

    /// scheduleOptions.coresPerRank is the engine budget that comet's commThreads (or
    /// gemmThreads) divide; a configuration that gives both kinds loads only if they
    /// make the budget, as one written before the budget does by default.
    func testTheEngineBudgetIsAConfigurationKey() throws {
        let config = try load(#"{"scheduleOptions": {"coresPerRank": 4, "commThreads": 3}}"#)
        XCTAssertNoThrow(try config.validate(ranks: 8, expertParallel: 8))
        let comet = config.scheduleOptions.engines(for: .comet), sequential = config.scheduleOptions.engines(for: .sequential)
        XCTAssertEqual([comet.communicators, comet.gemm, sequential.communicators, sequential.gemm], [3, 1, 1, 3])
        let before = try load(#"{"scheduleOptions": {"commThreads": 1, "gemmThreads": 1}}"#)
        XCTAssertNoThrow(try before.validate(ranks: 8, expertParallel: 8))
        let contradicting = try load(#"{"scheduleOptions": {"commThreads": 1, "gemmThreads": 2}}"#)
        XCTAssertThrowsError(try contradicting.validate(ranks: 8, expertParallel: 8)) {
            XCTAssertTrue("\($0)".hasPrefix("comet's 1 communicator + 2 GEMM engines are not the 2 engines per rank"), "\($0)")
        }
    }

    /// Broken JSON is named as such, with where it stops parsing (line and column,
    /// the column in characters), in one line.
    func testBrokenJSONSaysWhereItStopsParsing() throws {
        func message(_ json: String) -> String {
            do { _ = try load(json) } catch { return "\(error)" }
            return "no error"
        }
        let missingComma = message("{\n  \"steps\": 3\n  \"layers\": 2\n}\n")
        XCTAssertTrue(missingComma.contains("does not parse as JSON: invalid value at line 3, column 3"), missingComma)
        XCTAssertFalse(missingComma.contains("\n"), "one line: \(missingComma)")
        XCTAssertTrue(message("{not json").hasSuffix("does not parse as JSON: invalid value at line 1, column 2"))
        let accented = message("{\"a\u{00e9}\": 1,\n \"b\u{00e9}\u{00e9}\": x}")
        XCTAssertTrue(accented.hasSuffix("at line 2, column 9"), "columns count characters, not bytes: \(accented)")
        let truncated = message("{\"steps\": 3,\n\n")
        XCTAssertTrue(truncated.contains("does not parse as JSON: unexpected end of file"), truncated)
        XCTAssertTrue(truncated.hasSuffix("(its last character is at line 1, column 12)"), truncated)
        XCTAssertTrue(message(" \n").hasSuffix("does not parse as JSON: the file is empty"))
    }
}

/// The checks comet-train makes of --out and --resume on every rank before any writes.
final class RunDirectoryTests: XCTestCase {
    private var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("comet-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root.appendingPathComponent("file").path, contents: Data("x".utf8))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.appendingPathComponent("locked").path)
        try? FileManager.default.removeItem(at: root)
    }

    private func message(_ check: () throws -> Void) -> String {
        do { try check() } catch { return "\(error)" }
        return "no error"
    }

    func testWritableAcceptsDirectoriesAndWhatCanBeCreated() throws {
        XCTAssertNoThrow(try RunDirectory.checkWritable(root.path, label: "--out r"))
        XCTAssertNoThrow(try RunDirectory.checkWritable(root.appendingPathComponent("new/deeper").path, label: "--out r"))
        XCTAssertEqual(message { try RunDirectory.checkWritable(self.root.appendingPathComponent("file").path, label: "--out r") },
                       "--out r is a file, not a run directory")
        let under = root.appendingPathComponent("file/run/x").path
        XCTAssertEqual(message { try RunDirectory.checkWritable(under, label: "--out r") },
                       "--out r cannot be created: \(root.path)/file is a file, not a directory")
        XCTAssertEqual(RunDirectory.nearestExistingAncestor(of: "comet-no-such-\(UUID().uuidString)/x")?.path, ".")
        XCTAssertEqual(RunDirectory.nearestExistingAncestor(of: "/comet-no-such")?.path, "/")
    }

    /// Permissions bind everyone but root, so this part is skipped as root.
    func testWritableRejectsADirectoryThisUserCannotWrite() throws {
        let locked = root.appendingPathComponent("locked")
        try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o555])
        try XCTSkipIf(geteuid() == 0, "root writes into any directory")
        XCTAssertEqual(message { try RunDirectory.checkWritable(locked.path, label: "--out r") }, "--out r cannot be written to: Permission denied")
        XCTAssertEqual(message { try RunDirectory.checkWritable(locked.appendingPathComponent("run").path, label: "--out r") },
                       "--out r cannot be created in \(locked.path): Permission denied")
    }

    func testResumableNeedsAnExistingDirectoryWithACheckpoint() throws {
        XCTAssertEqual(message { try RunDirectory.checkResumable(self.root.appendingPathComponent("missing").path, label: "--resume r") },
                       "--resume r does not exist")
        XCTAssertEqual(message { try RunDirectory.checkResumable(self.root.appendingPathComponent("file").path, label: "--resume r") },
                       "--resume r is a file, not a run directory")
        XCTAssertEqual(message { try RunDirectory.checkResumable(self.root.path, label: "--resume r") },
                       "--resume r holds no checkpoint.safetensors to continue from")
        _ = FileManager.default.createFile(atPath: root.appendingPathComponent("checkpoint.safetensors").path, contents: Data())
        XCTAssertNoThrow(try RunDirectory.checkResumable(root.path, label: "--resume r"))
    }

    /// A resumed run keeps the steps logged up to its checkpoint, and drops the rest
    /// and a line that a killed run cut short.
    func testResumedMetricsKeepTheStepsUpToTheCheckpoint() {
        let logged = (1...5).map { "{\"loss\":2.5,\"step\":\($0)}\n" }.joined() + "{\"loss\":2.5,\"st"
        XCTAssertEqual(String(decoding: RunDirectory.metricsLines(Data(logged.utf8), through: 3), as: UTF8.self),
                       (1...3).map { "{\"loss\":2.5,\"step\":\($0)}\n" }.joined())
        XCTAssertEqual(RunDirectory.metricsLines(Data(), through: 3), Data())
    }

    func testFileProblemsAreTheSystemsWords() {
        do {
            try FileManager.default.createDirectory(at: root.appendingPathComponent("file/x"), withIntermediateDirectories: true)
            XCTFail("created a directory under a file")
        } catch {
            XCTAssertEqual(RunDirectory.fileProblem(error), "Not a directory", "\(error)")
        }
    }
}
