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
        // Sequential for two dozen steps; comet, whose windows carry the rows over TCP (slowly), for two.
        for (schedule, steps) in [("sequential", 24), ("comet", 2)] {
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
