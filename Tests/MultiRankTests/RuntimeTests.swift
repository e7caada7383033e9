import XCTest

/// The runtime on live jobs of 1 to 8 ranks, through `comet-probe` and `comet-train`.
final class RuntimeTests: XCTestCase {
    func testWindowRoundTripsOnBothPaths() throws {
        for ranks in [1, 2, 4, 8] {
            try expectPass(ranks: ranks, ["window"], "window: passed on \(ranks) ranks, path direct")
            try expectPass(ranks: ranks, ["window", "--force-put-get"], "window: passed on \(ranks) ranks, path putGet")
        }
    }

    func testFlagsAcrossRanksAndThreads() throws {
        for ranks in [2, 8] {
            try expectPass(ranks: ranks, ["flags"], "flags: passed on \(ranks) ranks, path direct")
            try expectPass(ranks: ranks, ["flags", "--force-put-get"], "flags: passed on \(ranks) ranks, path putGet")
        }
    }

    func testCollectivesMatchASingleRankReference() throws {
        for ranks in [1, 2, 4, 8] {
            try expectPass(ranks: ranks, ["collectives"], "collectives: passed on \(ranks) ranks")
        }
    }

    func testCommunicatorSplitsForEveryLayout() throws {
        try expectPass(ranks: 8, ["groups"], "groups: passed on 8 ranks, 10 layouts")
        try expectPass(ranks: 4, ["groups"], "groups: passed on 4 ranks, 6 layouts")
    }

    func testMissedDeadlineAbortsTheJobWithItsReport() throws {
        for path in [[], ["--force-put-get"]] {
            let job = try MPIJob.run(ranks: 4, "comet-probe", ["deadline", "--wait-timeout", "1"] + path, timeout: 90)
            XCTAssertFalse(job.timedOut, "the job hung: \(job.transcript)")
            XCTAssertNotEqual(job.status, 0, job.transcript)
            XCTAssertEqual(
                job.errorLines(containing: "rank 3: waited 1.0 s for flag 0 (a flag that no rank raises) to reach 1; it holds 0; aborting the job"),
                1, job.transcript)
        }
    }

    func testLayoutThatDoesNotFitTheJobFailsOnceAndCleanly() throws {
        let job = try MPIJob.run(ranks: 3, "comet-train", ["--ep", "2"], timeout: 90)
        XCTAssertFalse(job.timedOut, "the job hung: \(job.transcript)")
        XCTAssertNotEqual(job.status, 0, job.transcript)
        XCTAssertEqual(job.errorLines(containing: "comet-train: error: EP=2 cannot fill the job's 3 ranks"),
                       1, job.transcript)
        XCTAssertFalse(job.stderr.contains("crashed"), job.transcript)

        let zero = try MPIJob.run(ranks: 2, "comet-train", ["--tp", "0"], timeout: 90)
        XCTAssertNotEqual(zero.status, 0, zero.transcript)
        XCTAssertEqual(zero.errorLines(containing: "TP must be at least 1, got 0"), 1, zero.transcript)
    }

    func testUnknownFlagIsReportedOnce() throws {
        let job = try MPIJob.run(ranks: 4, "comet-train", ["--no-such-flag"], timeout: 90)
        XCTAssertFalse(job.timedOut, "the job hung: \(job.transcript)")
        XCTAssertNotEqual(job.status, 0, job.transcript)
        XCTAssertEqual(job.errorLines(containing: "Unknown option '--no-such-flag'"), 1, job.transcript)
    }

    func testSelfCheckOnEightRanks() throws {
        let job = try MPIJob.run(ranks: 8, "comet-train", ["--self-check"])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("8 on 1 node(s), layout EP=8 x TP=1 x DP=1"), job.transcript)
        XCTAssertTrue(job.stdout.contains("round trip ok on direct (MPI_Win_allocate_shared) and on put/get (MPI_Win_allocate)"), job.transcript)
        XCTAssertTrue(job.stdout.contains("self-check passed"), job.transcript)
    }

    func testUsersCoreTypeWins() throws {
        let job = try MPIJob.run(ranks: 2, "comet-probe", ["blas"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("core Prescott (set by OPENBLAS_CORETYPE)"), job.transcript)
    }

    /// The state of a process that comet re-ran with a better core than OpenBLAS's
    /// generic fall-back: the selection is reported and the kernel is checked.
    func testSelectedCoreIsCheckedAndReported() throws {
        let job = try MPIJob.run(ranks: 2, "comet-probe", ["blas"],
                                 environment: ["OPENBLAS_CORETYPE": "Haswell", "COMET_BLAS_REPLACED_CORE": "Prescott"])
        XCTAssertEqual(job.status, 0, job.transcript)
        XCTAssertTrue(job.stdout.contains("core Haswell (selected by comet instead of the generic Prescott)"), job.transcript)
        XCTAssertTrue(job.stdout.contains("(ok)"), job.transcript)
    }
}
