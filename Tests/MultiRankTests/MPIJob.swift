import Foundation
import XCTest

/// One `mpirun` of a comet executable, run as a child process with a time limit.
struct MPIJob {
    let status: Int32
    /// When the job ended.
    let ended: Date
    let stdout: String
    let stderr: String
    let seconds: Double
    let timedOut: Bool

    /// The directory holding the executables that `swift test` built beside the test bundle.
    static let productsDirectory: URL = {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if FileManager.default.fileExists(atPath: bundle.appendingPathComponent("comet-probe").path) { return bundle }
        return Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
            .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("comet-probe").path) } ?? bundle
    }()

    /// `mpirun -n ranks PROGRAM ARGUMENTS`, with what oversubscription and root need,
    /// and `environment` exported to every rank. Killed after `timeout` seconds.
    static func run(
        ranks: Int, _ program: String, _ arguments: [String] = [],
        environment: [String: String] = [:], timeout: Double = 180
    ) throws -> MPIJob {
        var launcher = ["--oversubscribe", "--bind-to", "none", "-n", "\(ranks)"]
        if geteuid() == 0 { launcher.append("--allow-run-as-root") }
        for name in environment.keys.sorted() { launcher += ["-x", name] }
        return try launch("/usr/bin/mpirun", launcher + [productsDirectory.appendingPathComponent(program).path] + arguments,
                          environment: environment, timeout: timeout)
    }

    /// The repository's `scripts/two-hosts` running PROGRAM (one of the products, or a
    /// path) with `arguments` on 4 + 4 ranks across two test hosts. While it runs,
    /// `during` is given the two hosts' network namespaces (to act on one mid-run).
    /// Killed after `timeout` seconds.
    static func acrossTwoHosts(
        _ program: String, _ arguments: [String] = [], timeout: Double = 300, during: (([String]) throws -> Void)? = nil
    ) throws -> MPIJob {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/two-hosts")
        let names = FileManager.default.temporaryDirectory.appendingPathComponent("comet-hosts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: names) }
        let path = program.contains("/") ? program : productsDirectory.appendingPathComponent(program).path
        return try launch(script.path, [path] + arguments, environment: ["TWO_HOSTS_NAMES": names.path], timeout: timeout) {
            guard let during else { return }
            var hosts: [String] = []
            try waitUntil(timeout: 60, "the two hosts were made") {
                hosts = ((try? String(contentsOf: names, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                return hosts.count == 2
            }
            try during(hosts)
        }
    }

    /// Runs `executable` with `arguments`, standard output and error captured.
    private static func launch(
        _ executable: String, _ arguments: [String], environment: [String: String], timeout: Double,
        during: () throws -> Void = {}
    ) throws -> MPIJob {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("stdout"), err = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice

        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        let start = Date()
        try process.run()
        do {
            try during()
        } catch {
            process.terminate()
            finished.wait()
            throw error
        }
        let timedOut = finished.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            process.terminate()
            finished.wait()
        }
        return MPIJob(
            status: process.terminationStatus, ended: Date(),
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "",
            seconds: Date().timeIntervalSince(start), timedOut: timedOut)
    }

    /// Everything the job printed, for failure messages.
    var transcript: String { "exit \(status) after \(String(format: "%.1f", seconds)) s\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }

    /// How many lines of standard error contain `text`.
    func errorLines(containing text: String) -> Int {
        stderr.split(separator: "\n").filter { $0.contains(text) }.count
    }

    /// The lines of standard error that comet's executables wrote (each starts
    /// "comet"), without mpirun's own notices about the exit status.
    var cometErrorLines: [Substring] {
        stderr.split(separator: "\n").filter { $0.hasPrefix("comet") }
    }
}

/// Polls `condition` ten times a second until it holds; throws, naming `what`, after `timeout` seconds.
func waitUntil(timeout: Double, _ what: String, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        guard Date() < deadline else { throw NeverHappened(description: "not within \(timeout) s: \(what)") }
        usleep(100_000)
    }
}

struct NeverHappened: Error, CustomStringConvertible {
    let description: String
}

/// Runs `comet-probe SCENARIO` on `ranks` ranks and expects exit status 0 and
/// `expected` in its standard output.
func expectPass(
    ranks: Int, _ scenario: [String], _ expected: String, file: StaticString = #filePath, line: UInt = #line
) throws {
    let job = try MPIJob.run(ranks: ranks, "comet-probe", scenario)
    XCTAssertFalse(job.timedOut, "timed out: \(job.transcript)", file: file, line: line)
    XCTAssertEqual(job.status, 0, job.transcript, file: file, line: line)
    XCTAssertTrue(job.stdout.contains(expected), "expected '\(expected)' in \(job.transcript)", file: file, line: line)
}
