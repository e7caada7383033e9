import CometMoE
import Foundation
import XCTest

/// Adaptive workload assignment's parts: candidates, the tuning table and the choice.
final class TuningTests: XCTestCase {
    private let link = LinkModel(name: "test", latency: 20e-6, bandwidth: 5e6)

    private func key(tokens: Int = 1024, tp: Int = 1, link: String = "test") -> TuningKey {
        var config = MoEConfig()
        config.tokensPerRank = tokens
        return TuningKey(config: config, ranks: 8, tensorParallel: tp, link: link, machine: "test/2 cores/any")
    }

    func testCandidatesKeepOneThreadOfEachKindWithinTheBudget() {
        let two = WorkloadSplit.candidates(threads: 2)
        XCTAssertEqual(Set(two.map { [$0.commThreads, $0.gemmThreads] }), [[1, 1]])
        XCTAssertTrue(two.contains(.fixedDefault), "the fixed default is always measured")
        let three = Set(WorkloadSplit.candidates(threads: 3).map { [$0.commThreads, $0.gemmThreads] })
        XCTAssertEqual(three, [[1, 1], [1, 2], [2, 1]])
    }

    func testTableRecordsReplacesAndRoundTripsThroughAFile() throws {
        var table = TuningTable()
        let fast = WorkloadSplit(commThreads: 1, gemmThreads: 1, tileRows: 128, blockColumns: 64)
        table.record(TuningEntry(key: key(), measurements: [.init(split: .fixedDefault, milliseconds: 10), .init(split: fast, milliseconds: 8)]))
        table.record(TuningEntry(key: key(tp: 2), measurements: [.init(split: .fixedDefault, milliseconds: 12)]))
        table.record(TuningEntry(key: key(), measurements: [.init(split: .fixedDefault, milliseconds: 7), .init(split: fast, milliseconds: 8)]))
        XCTAssertEqual(table.entries.count, 2, "an entry with the same key is replaced")
        XCTAssertEqual(table.entry(for: key())?.best, .fixedDefault)
        XCTAssertNil(table.entry(for: key(tokens: 512)))

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tuning-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try TuningTable.load(path).entries.count, 0, "a missing table is empty")
        try table.json().write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TuningTable.load(path).entry(for: key(tp: 2))?.milliseconds(.fixedDefault), 12)
        try Data("{\"entries\": 3}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TuningTable.load(path)) {
            XCTAssertTrue("\($0)".hasSuffix("is not one comet-bench tune wrote: entries: Expected to decode Array<Any> but found number instead."),
                          "\($0)")
        }
        try Data("{\"entries\": [\n  {\"key\": }\n]}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TuningTable.load(path)) {
            XCTAssertEqual("\($0)", "the tuning table \(path) does not parse as JSON: invalid value at line 2, column 11")
        }
    }

    func testAMeasuredEntryWinsAndAMissingOneFallsBackToTheCostModel() {
        let slow = WorkloadSplit(commThreads: 1, gemmThreads: 1, tileRows: 256, blockColumns: 256)
        var table = TuningTable()
        table.record(TuningEntry(key: key(), measurements: [.init(split: .fixedDefault, milliseconds: 10), .init(split: slow, milliseconds: 9)]))
        let rate: (Int, Int, Int) -> Double = { _, _, _ in 80 }
        let measured = AdaptiveAssignment.choose(key(), table: table, link: link, cores: 2, ranksPerNode: 8, gemmGFLOPs: rate)
        XCTAssertEqual(measured.split, slow)
        XCTAssertTrue(measured.reason.hasPrefix("measured"), measured.reason)
        let modelled = AdaptiveAssignment.choose(key(tokens: 512), table: table, link: link, cores: 2, ranksPerNode: 8, gemmGFLOPs: rate)
        XCTAssertTrue(modelled.reason.hasPrefix("cost model"), modelled.reason)
        XCTAssertTrue(WorkloadSplit.candidates(threads: 2).contains(modelled.split))
    }

    /// Where thin GEMMs lose efficiency and the link is fast, the model cuts coarser
    /// tiles; where they do not and the link is slow, finer ones that start the
    /// pipeline sooner.
    func testTheCostModelFollowsGEMMEfficiencyAndTheLink() {
        let thinIsSlow: (Int, Int, Int) -> Double = { m, n, _ in 80 * Double(min(m, n)) / Double(min(m, n) + 96) }
        let flat: (Int, Int, Int) -> Double = { _, _, _ in 80 }
        let fast = LinkModel(name: "fast", latency: 20e-6, bandwidth: 5e8)
        let coarse = AdaptiveAssignment.choose(key(), table: nil, link: fast, cores: 2, ranksPerNode: 8, gemmGFLOPs: thinIsSlow).split
        let fine = AdaptiveAssignment.choose(key(), table: nil, link: LinkModel(name: "slow", latency: 20e-6, bandwidth: 5e5),
                                             cores: 2, ranksPerNode: 8, gemmGFLOPs: flat).split
        XCTAssertGreaterThan(coarse.tileRows, fine.tileRows, "coarse \(coarse), fine \(fine)")
    }
}
