import CometMoE
import Foundation
import XCTest

/// Adaptive workload assignment's parts: candidates, the tuning table and the choice.
final class TuningTests: XCTestCase {
    private let link = LinkModel(name: "test", latency: 20e-6, bandwidth: 5e6)

    private let fixed = WorkloadSplit.fixedDefault(coresPerRank: 2)
    /// 8 ranks on 2 host cores, as on the development machine.
    private let host = HostCores(cores: 2, ranksPerNode: 8)

    private func key(tokens: Int = 1024, tp: Int = 1, link: String = "test", clock: String = "wall", cores: Int = 2) -> TuningKey {
        var config = MoEConfig()
        config.tokensPerRank = tokens
        return TuningKey(config: config, ranks: 8, tensorParallel: tp, link: link, clock: clock, coresPerRank: cores,
                         machine: "test/2 cores/any")
    }

    /// The candidates divide the budget exactly: C communicators and N - C GEMM
    /// engines for C = 1 ... N - 1, each with every tile and block size.
    func testCandidatesAreTheSplitsOfTheBudget() {
        let two = WorkloadSplit.candidates(coresPerRank: 2)
        XCTAssertEqual(Set(two.map { [$0.commThreads, $0.gemmThreads] }), [[1, 1]])
        XCTAssertEqual(two.count, 12, "4 tile sizes x 3 block sizes")
        XCTAssertTrue(two.contains(fixed), "the fixed default is always measured")
        let four = WorkloadSplit.candidates(coresPerRank: 4)
        XCTAssertEqual(Set(four.map { [$0.commThreads, $0.gemmThreads] }), [[1, 3], [2, 2], [3, 1]])
        XCTAssertEqual(four.count, 3 * 12)
        XCTAssertTrue(four.allSatisfy { $0.coresPerRank == 4 })
        XCTAssertEqual(WorkloadSplit.fixedDefault(coresPerRank: 4),
                       WorkloadSplit(commThreads: 1, gemmThreads: 3, tileRows: 32, blockColumns: 256))
        XCTAssertTrue(four.contains(.fixedDefault(coresPerRank: 4)))
    }

    /// On a modelled GPU the candidates also divide its SMs: each of `smCandidates`
    /// communication SMs with two tile and two block sizes, the GPU's fixed default
    /// among them; applied, a split sets comet's SMs, and a split from a table written
    /// before GPUs (no comm_sms key) reads as none.
    func testGPUCandidatesDivideTheSMs() throws {
        let gpu = WorkloadSplit.candidates(coresPerRank: 2, onGPU: true)
        XCTAssertEqual(Set(gpu.compactMap(\.commSMs)), Set(WorkloadSplit.smCandidates))
        XCTAssertEqual(gpu.count, WorkloadSplit.smCandidates.count * 4)
        XCTAssertTrue(gpu.contains(.fixedDefault(coresPerRank: 2, commSMs: 24)))
        var options = ScheduleOptions()
        options.commSMs = 48
        XCTAssertEqual(gpu[0].applied(to: options).commSMs, gpu[0].commSMs)
        XCTAssertEqual(fixed.applied(to: options).commSMs, 48, "a split without SMs keeps the options' own")
        let old = #"{"commThreads": 1, "gemmThreads": 1, "tileRows": 32, "blockColumns": 256}"#
        XCTAssertEqual(try JSONDecoder().decode(WorkloadSplit.self, from: Data(old.utf8)), fixed)
    }

    /// A split applied to options keeps their budget, and the options then give comet that split.
    func testASplitAppliedToOptionsIsCometsSplit() throws {
        var options = ScheduleOptions()
        options.coresPerRank = 3
        let split = WorkloadSplit(commThreads: 2, gemmThreads: 1, tileRows: 32, blockColumns: 128)
        let applied = split.applied(to: options)
        XCTAssertNoThrow(try applied.validate())
        XCTAssertEqual(applied.engines(for: .comet), EngineSplit(communicators: 2, gemm: 1))
        XCTAssertEqual(applied.engines(for: .sequential), EngineSplit(communicators: 1, gemm: 2))
        XCTAssertEqual([applied.tileRows, applied.blockColumns], [32, 128])
        XCTAssertThrowsError(try WorkloadSplit.fixedDefault(coresPerRank: 2).applied(to: options).validate(),
                             "a split of another budget does not fit")
    }

    func testTableRecordsReplacesAndRoundTripsThroughAFile() throws {
        var table = TuningTable()
        let fast = WorkloadSplit(commThreads: 1, gemmThreads: 1, tileRows: 128, blockColumns: 64)
        table.record(TuningEntry(key: key(), measurements: [.init(split: fixed, milliseconds: 10), .init(split: fast, milliseconds: 8)]))
        table.record(TuningEntry(key: key(tp: 2), measurements: [.init(split: fixed, milliseconds: 12)]))
        table.record(TuningEntry(key: key(), measurements: [.init(split: fixed, milliseconds: 7), .init(split: fast, milliseconds: 8)]))
        XCTAssertEqual(table.entries.count, 2, "an entry with the same key is replaced")
        XCTAssertEqual(table.entry(for: key())?.best, fixed)
        XCTAssertNil(table.entry(for: key(tokens: 512)))
        XCTAssertNil(table.entry(for: key(clock: "device")), "an entry holds for its clock only")
        XCTAssertNil(table.entry(for: key(cores: 3)), "an entry holds for its engines per rank only")

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tuning-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try TuningTable.load(path).entries.count, 0, "a missing table is empty")
        try table.json().write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TuningTable.load(path).entry(for: key(tp: 2))?.milliseconds(fixed), 12)
        try Data("{\"entries\": 3}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TuningTable.load(path)) {
            XCTAssertTrue("\($0)".hasSuffix("is not one comet-bench tune wrote: entries: Expected to decode Array<Any> but found number instead."),
                          "\($0)")
        }
        let old = #"{"entries": [{"key": {"link": "test", "machine": "m", "ranks": 8}, "best": {}, "measurements": []}]}"#
        try Data(old.utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TuningTable.load(path)) {
            XCTAssertEqual("\($0)", "the tuning table \(path) predates device time: its keys lack the clock and the engines per rank "
                + "that its candidates were profiled on; profile again into a new table (comet-bench tune --table)")
        }
        try Data("{\"entries\": [\n  {\"key\": }\n]}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TuningTable.load(path)) {
            XCTAssertEqual("\($0)", "the tuning table \(path) does not parse as JSON: invalid value at line 2, column 11")
        }
    }

    func testAMeasuredEntryWinsAndAMissingOneFallsBackToTheCostModel() {
        let slow = WorkloadSplit(commThreads: 1, gemmThreads: 1, tileRows: 256, blockColumns: 256)
        var table = TuningTable()
        table.record(TuningEntry(key: key(), measurements: [.init(split: fixed, milliseconds: 10), .init(split: slow, milliseconds: 9)]))
        let rate: (Int, Int, Int) -> Double = { _, _, _ in 80 }
        let measured = AdaptiveAssignment.choose(key(), table: table, link: link, host: host, gemmGFLOPs: rate)
        XCTAssertEqual(measured.split, slow)
        XCTAssertTrue(measured.reason.hasPrefix("measured"), measured.reason)
        let modelled = AdaptiveAssignment.choose(key(tokens: 512), table: table, link: link, host: host, gemmGFLOPs: rate)
        XCTAssertTrue(modelled.reason.hasPrefix("cost model"), modelled.reason)
        XCTAssertTrue(WorkloadSplit.candidates(coresPerRank: 2).contains(modelled.split))
    }

    /// On wall time the host's cores bound the GEMM engines (8 ranks on 2 cores: one
    /// more GEMM engine gains nothing) and a wake-up waits for a core (so a second
    /// communicator pays); on a per-rank clock neither holds, and the model spends
    /// the budget on GEMM engines.
    func testTheCostModelUsesTheHostsCoresOnWallTimeOnly() {
        let rate: (Int, Int, Int) -> Double = { _, _, _ in 80 }
        let wall = AdaptiveAssignment.choose(key(cores: 3), table: nil, link: link, host: host, gemmGFLOPs: rate).split
        let device = AdaptiveAssignment.choose(key(clock: "device", cores: 3), table: nil, link: link, host: nil, gemmGFLOPs: rate).split
        XCTAssertEqual([wall.commThreads, wall.gemmThreads], [2, 1], "\(wall)")
        XCTAssertEqual([device.commThreads, device.gemmThreads], [1, 2], "\(device)")
    }

    /// Where thin GEMMs lose efficiency and the link is fast, the model cuts coarser
    /// tiles; where they do not and the link is slow, finer ones that start the
    /// pipeline sooner.
    func testTheCostModelFollowsGEMMEfficiencyAndTheLink() {
        let thinIsSlow: (Int, Int, Int) -> Double = { m, n, _ in 80 * Double(min(m, n)) / Double(min(m, n) + 96) }
        let flat: (Int, Int, Int) -> Double = { _, _, _ in 80 }
        let fast = LinkModel(name: "fast", latency: 20e-6, bandwidth: 5e8)
        let coarse = AdaptiveAssignment.choose(key(), table: nil, link: fast, host: host, gemmGFLOPs: thinIsSlow).split
        let fine = AdaptiveAssignment.choose(key(), table: nil, link: LinkModel(name: "slow", latency: 20e-6, bandwidth: 5e5),
                                             host: host, gemmGFLOPs: flat).split
        XCTAssertGreaterThan(coarse.tileRows, fine.tileRows, "coarse \(coarse), fine \(fine)")
    }
}
