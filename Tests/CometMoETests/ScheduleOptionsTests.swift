import CometMoE
import XCTest

/// A rank's engine budget and how each schedule divides it (`ScheduleOptions`).
final class ScheduleOptionsTests: XCTestCase {
    private func options(cores: Int = 2, comm: Int? = nil, gemm: Int? = nil) -> ScheduleOptions {
        var options = ScheduleOptions()
        (options.coresPerRank, options.commThreads, options.gemmThreads) = (cores, comm, gemm)
        return options
    }

    private func message(_ options: ScheduleOptions) -> String? {
        do { try options.validate() } catch { return "\(error)" }
        return nil
    }

    /// Today's behaviour by default: one communicator and one GEMM engine for every schedule.
    func testTheDefaultIsOneCommunicatorAndOneGEMMEngine() throws {
        let defaults = ScheduleOptions()
        XCTAssertNoThrow(try defaults.validate())
        for kind in ScheduleKind.allCases {
            XCTAssertEqual(defaults.engines(for: kind), EngineSplit(communicators: 1, gemm: 1), kind.rawValue)
        }
    }

    /// Comet's communicators (or GEMM engines) take their share of the budget and the
    /// other kind the rest; sequential and chunked keep one communicator.
    func testCometSplitsTheBudgetAndTheBaselinesKeepOneCommunicator() {
        XCTAssertEqual(options(cores: 4, comm: 3).engines(for: .comet), EngineSplit(communicators: 3, gemm: 1))
        XCTAssertEqual(options(cores: 4, comm: 3).engines(for: .cometRows), EngineSplit(communicators: 3, gemm: 1))
        XCTAssertEqual(options(cores: 4, gemm: 3).engines(for: .comet), EngineSplit(communicators: 1, gemm: 3))
        XCTAssertEqual(options(cores: 4, comm: 2, gemm: 2).engines(for: .comet), EngineSplit(communicators: 2, gemm: 2))
        XCTAssertEqual(options(cores: 4).engines(for: .comet), EngineSplit(communicators: 1, gemm: 3))
        for kind in [ScheduleKind.sequential, .chunked] {
            XCTAssertEqual(options(cores: 4, comm: 3).engines(for: kind), EngineSplit(communicators: 1, gemm: 3), kind.rawValue)
        }
        for cores in 2...6 {
            XCTAssertNil(message(options(cores: cores, comm: cores - 1)))
            XCTAssertEqual(options(cores: cores, comm: 1).engines(for: .comet).total, cores)
        }
    }

    /// Every way to leave comet without a communicator or a GEMM engine, or to
    /// contradict the budget, is one line that names the budget.
    func testABudgetThatDoesNotFitIsOneClearLine() {
        let cases: [(ScheduleOptions, String)] = [
            (options(cores: 1), "engines per rank (--cores-per-rank) must be 2 to 63, one communicator and one GEMM engine at least; got 1"),
            (options(cores: 64), "engines per rank (--cores-per-rank) must be 2 to 63, one communicator and one GEMM engine at least; got 64"),
            (options(cores: 2, comm: 2), "comet needs at least one communicator and one GEMM engine of the 2 engines per rank; "
                + "got 2 communicator + 0 GEMM"),
            (options(cores: 3, gemm: 3), "comet needs at least one communicator and one GEMM engine of the 3 engines per rank; "
                + "got 0 communicator + 3 GEMM"),
            (options(cores: 3, comm: 0), "comet needs at least one communicator and one GEMM engine of the 3 engines per rank; "
                + "got 0 communicator + 3 GEMM"),
            (options(cores: 2, comm: 1, gemm: 2), "comet's 1 communicator + 2 GEMM engines are not the 2 engines per rank "
                + "(--cores-per-rank): give one of the two, the other is the rest"),
        ]
        for (options, expected) in cases {
            XCTAssertEqual(message(options), expected)
            XCTAssertFalse(expected.contains("\n"))
        }
    }

    func testTheReportLineNamesTheBudgetAndEachSplit() {
        let one = EngineSplit(communicators: 1, gemm: 1)
        XCTAssertEqual(EngineSplit.reportLine([("sequential", one), ("comet", one)]), "engines per rank: 2 (1 communicator + 1 GEMM)")
        let budget = options(cores: 3, comm: 2)
        let line = EngineSplit.reportLine(ScheduleKind.allCases.map { ($0.rawValue, budget.engines(for: $0)) })
        XCTAssertEqual(line, "engines per rank: 3 (sequential, chunked: 1 communicator + 2 GEMM; comet, comet-rows: 2 communicator + 1 GEMM)")
    }
}
