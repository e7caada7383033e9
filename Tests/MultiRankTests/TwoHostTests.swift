import Foundation
import XCTest

/// Jobs across two test hosts on this machine (`scripts/two-hosts`: network namespaces
/// with host names of their own, joined by a veth pair), 4 + 4 ranks over TCP, where
/// every window takes the put/get path by itself. Making namespaces needs root, as CI
/// runs; elsewhere these tests are skipped.
final class TwoHostTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(geteuid() == 0, "two test hosts need root (network namespaces)")
    }

    func testEveryScheduleMatchesTheReferenceOnThePutGetPath() throws {
        let job = try MPIJob.acrossTwoHosts("comet-probe", ["moe", "--tokens", "128", "--model-width", "64", "--hidden-width", "64",
                                                            "--wait-timeout", "60"])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("moe: passed on 8 ranks (EP=8 x TP=1), schedules sequential,chunked,comet,comet-rows"),
                      job.transcript)
        XCTAssertTrue(job.stdout.contains("2 nodes, window path putGet"), job.transcript)
    }

    /// The losses of every step, bit for bit, as on one host.
    func testTrainingAcrossTwoHostsHasTheOneHostLosses() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-two-hosts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        func losses(_ run: String) throws -> [Double] {
            try String(contentsOf: directory.appendingPathComponent("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double }
        }
        // Sequential for two dozen steps; comet, whose windows carry the rows over TCP (slowly), for four.
        for (schedule, steps) in [("sequential", 24), ("comet", 4)] {
            let arguments = ["--steps", "\(steps)", "--schedule", schedule, "--progress", "lines"]
            let apart = try MPIJob.acrossTwoHosts("comet-train", arguments + ["--out", directory.appendingPathComponent("two-\(schedule)").path])
            XCTAssertEqual(apart.status, 0, apart.transcript)
            let together = try MPIJob.run(ranks: 8, "comet-train", arguments + ["--out", directory.appendingPathComponent("one-\(schedule)").path])
            XCTAssertEqual(together.status, 0, together.transcript)
            XCTAssertEqual(try losses("two-\(schedule)").count, steps)
            XCTAssertEqual(try losses("two-\(schedule)"), try losses("one-\(schedule)"), schedule)
        }
    }

    /// On a modelled GPU device time depends on the link model alone, not on where the
    /// ranks run: the layer bench's figures are those of one host.
    func testLayerDeviceTimesAreThoseOfOneHost() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-two-hosts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func rows(_ json: URL) throws -> [String: [String: Any]] {
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
            return Dictionary(uniqueKeysWithValues: (report["schedules"] as! [[String: Any]]).map { ($0["schedule"] as! String, $0) })
        }
        let arguments = ["layer", "--device", "h800", "--tokens", "128", "--model-width", "128", "--hidden-width", "256",
                         "--iterations", "1", "--warmup", "0", "--schedule", "sequential", "--schedule", "comet", "--json"]
        let (two, one) = (directory.appendingPathComponent("two.json"), directory.appendingPathComponent("one.json"))
        let apart = try MPIJob.acrossTwoHosts("comet-bench", arguments + [two.path])
        XCTAssertEqual(apart.status, 0, apart.transcript)
        let together = try MPIJob.run(ranks: 8, "comet-bench", arguments + [one.path])
        XCTAssertEqual(together.status, 0, together.transcript)
        let (apartRows, togetherRows) = (try rows(two), try rows(one))
        for schedule in ["sequential", "comet"] {
            let (a, b) = (apartRows[schedule]!["total_ms"] as! Double, togetherRows[schedule]!["total_ms"] as! Double)
            XCTAssertEqual(a, b, accuracy: 0.05 * b, schedule)
        }
    }
}

/// What the two test hosts do when a rank or the link between them fails, and what
/// `scripts/two-hosts` leaves behind.
final class TwoHostFailureTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        try XCTSkipUnless(geteuid() == 0, "two test hosts need root (network namespaces)")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("comet-two-hosts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// The steps a run directory's metrics.jsonl holds, with their losses.
    private func losses(_ run: URL) throws -> [(step: Int, loss: Double)] {
        try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            let line = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            return (line["step"] as! Int, line["loss"] as! Double)
        }
    }

    /// A long sequential run, checkpointed every 5 steps (sequential, whose rows go
    /// through MPI's all-to-all, trains fast across the hosts).
    private func longRun() throws -> URL {
        let config = directory.appendingPathComponent("config.json")
        try Data(#"{"schedule": "sequential", "steps": 1000, "checkpointEvery": 5}"#.utf8).write(to: config)
        return config
    }

    /// The comet-train processes running on `host`.
    private func ranks(on host: String) -> [Int32] {
        let pids = (try? shell("ip netns pids \(host)")) ?? ""
        return pids.split(separator: "\n").compactMap { Int32($0) }.filter {
            (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.hasPrefix("comet-train") == true
        }
    }

    /// kill -9 of one rank on the second host: the job ends on both hosts within
    /// 10 s, and the last checkpoint continues bit for bit as if nothing happened.
    func testKilledRankEndsTheJobAndItsCheckpointResumes() throws {
        let (config, run) = (try longRun(), directory.appendingPathComponent("run"))
        var killed = Date.distantFuture
        let job = try MPIJob.acrossTwoHosts("comet-train", ["--config", config.path, "--progress", "lines", "--out", run.path],
                                            timeout: 120) { hosts in
            try waitUntil(timeout: 90, "step 12 logged") { ((try? self.losses(run)) ?? []).count >= 12 }
            let rank = try XCTUnwrap(self.ranks(on: hosts[1]).first, "no comet-train on \(hosts[1])")
            XCTAssertEqual(kill(rank, SIGKILL), 0)
            killed = Date()
        }
        XCTAssertFalse(job.timedOut, job.transcript)
        XCTAssertNotEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stderr.contains("exited on signal 9"), job.transcript)
        XCTAssertFalse(job.stderr.contains("left running"), job.transcript)
        XCTAssertLessThan(job.ended.timeIntervalSince(killed), 10, job.transcript)

        let stop = try losses(run).count + 3
        let resumed = try MPIJob.acrossTwoHosts("comet-train",
                                                ["--resume", run.path, "--stop-after", "\(stop)", "--progress", "lines"])
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        let whole = directory.appendingPathComponent("whole")
        let reference = try MPIJob.run(ranks: 8, "comet-train", ["--config", config.path, "--stop-after", "\(stop)",
                                                                 "--progress", "lines", "--out", whole.path])
        XCTAssertEqual(reference.status, 0, reference.transcript)
        let (apart, together) = (try losses(run), try losses(whole))
        XCTAssertEqual(apart.map(\.step), Array(1...stop), "each step once in metrics.jsonl")
        XCTAssertEqual(apart.map(\.loss), together.map(\.loss))
    }

    /// The link between the hosts taken down mid-run: the job ends with the deadline
    /// report naming what it waited for, and leaves no process on either host.
    func testLinkDownEndsTheJobWithTheDeadlineReport() throws {
        let run = directory.appendingPathComponent("run")
        let job = try MPIJob.acrossTwoHosts("comet-train", ["--steps", "1000", "--wait-timeout", "5", "--progress", "lines",
                                                            "--out", run.path], timeout: 120) { hosts in
            try waitUntil(timeout: 90, "step 1 logged") { ((try? self.losses(run)) ?? []).count >= 1 }
            XCTAssertEqual(try shell("ip -n \(hosts[1]) link set eth0 down && echo down"), "down\n")
        }
        XCTAssertFalse(job.timedOut, job.transcript)
        XCTAssertNotEqual(job.status, 0, job.transcript)
        let reports = job.cometErrorLines.filter { $0.contains("aborting the job") }
        XCTAssertTrue(reports.contains { $0.contains(": waited 5.0 s for ") }, job.transcript)
        XCTAssertFalse(job.stderr.contains("left running"), job.transcript)
    }

    /// Two runs in a row: the hosts have names of their own, and afterwards no
    /// namespace, link or Open MPI process is left.
    func testTwoRunsLeaveNothingBehind() throws {
        for _ in 0..<2 {
            let job = try MPIJob.acrossTwoHosts("/bin/hostname")
            XCTAssertEqual(job.status, 0, job.transcript)
            let names = job.stdout.split(separator: "\n").reduce(into: [:]) { $0[$1, default: 0] += 1 }
            XCTAssertEqual(names.values.sorted(), [4, 4], job.transcript)
            XCTAssertFalse(try shell("ip netns list").contains("comet2h-"))
            XCTAssertFalse(try shell("ip link show").contains("comet2h"))
            XCTAssertEqual(try shell("ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 == \"orted\"'"), "", "an Open MPI daemon is left")
        }
    }
}

/// Runs `command` with sh and returns its standard output.
private func shell(_ command: String) throws -> String {
    let process = Process(), pipe = Pipe()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: output, as: UTF8.self)
}
