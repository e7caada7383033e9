import XCTest

@testable import CometDevices

/// SM splits against h200_gemm_sm_split.csv, copy rates against h200_copy_by_ctas.csv,
/// and element-wise kernels.
final class SMSplitAndCopyTests: XCTestCase {
    let h200 = GPUModel.h200

    /// The measured slowdown of `row`'s GEMM: its time over the same GEMM's with no SM held.
    func measuredFactor(_ row: MeasuredTables.SMSplit) -> Double {
        let alone = MeasuredTables.smSplit.first { $0.shape == row.shape && $0.m == row.m && $0.held == 0 }!
        return row.seconds / alone.seconds
    }

    func testSMSplitExactAtMeasuredRows() {
        for row in MeasuredTables.smSplit where measuredFactor(row) <= SMSplitTable.waitedFactor {
            let (n, k) = (row.shape.n, row.shape.k)
            let factor = h200.smSplitFactor(m: row.m, n: n, k: k, heldSMs: row.held)
            XCTAssertEqual(factor, measuredFactor(row), accuracy: 1e-9, "\(row.shape) m \(row.m) held \(row.held)")
            let expected = h200.gemmSeconds(m: row.m, n: n, k: k) * measuredFactor(row)
            XCTAssertEqual(h200.gemmSeconds(m: row.m, n: n, k: k, heldSMs: row.held), expected, accuracy: expected * 1e-9)
        }
    }

    func testSmallGEMMsLoseMostAsSoonAsSMsAreHeld() {
        let (small, large) = (ExpertShape(.mixtral, tp: 1, .gemm2), ExpertShape(.mixtral, tp: 1, .gemm1))
        XCTAssertGreaterThan(h200.smSplitFactor(m: 1024, n: small.n, k: small.k, heldSMs: 8), 2.5)
        XCTAssertEqual(h200.smSplitFactor(m: 16384, n: large.n, k: large.k, heldSMs: 8), 2.7963 / 2.5522, accuracy: 1e-9)
        XCTAssertEqual(h200.smSplitFactor(m: 16384, n: large.n, k: large.k, heldSMs: 0), 1)
        XCTAssertEqual(h200.smSplitFactor(m: 16384, n: large.n, k: large.k, heldSMs: 132), .infinity)
    }

    func testSMSplitBetweenMeasuredPointsIsBounded() {
        let shape = ExpertShape(.phi35moe, tp: 1, .gemm1)
        let factor = { (m: Int, held: Int) in self.h200.smSplitFactor(m: m, n: shape.n, k: shape.k, heldSMs: held) }
        // Between held counts 32 and 48 at m 4096: linear.
        XCTAssertEqual(factor(4096, 40), (factor(4096, 32) + factor(4096, 48)) / 2, accuracy: 1e-12)
        // Between measured m (4096 and 16384) at held 64: within the two.
        let (low, high) = (factor(4096, 64), factor(16384, 64))
        XCTAssertTrue((min(low, high)...max(low, high)).contains(factor(8192, 64)))
        // The waited row (held 96 at m 1024, 162x) is left out: held 96 grows from held 64
        // as the SMs left shrink.
        XCTAssertEqual(factor(1024, 96), factor(1024, 64) * (132 - 64) / (132 - 96), accuracy: 1e-9)
        XCTAssertLessThan(factor(1024, 96), 7)
    }

    func testSMSplitOfOtherShapesAndGPUs() {
        // A TP 8 shard (not in the split table) lies between the measured GEMMs nearest in FLOPs.
        let shard = ExpertShape(.mixtral, tp: 8, .gemm1)  // 60 GFLOP at m 4096
        let factor = h200.smSplitFactor(m: 4096, n: shard.n, k: shard.k, heldSMs: 16)
        let mixtral = ExpertShape(.mixtral, tp: 1, .gemm1)
        /// gemm1 and gemm2 of a model at m 1024, averaged (equal in FLOPs).
        func measured(_ model: PaperModel) -> Double {
            ExpertGEMM.allCases.map { gemm in
                let shape = ExpertShape(model, tp: 1, gemm)
                return h200.smSplitFactor(m: 1024, n: shape.n, k: shape.k, heldSMs: 16)
            }.reduce(0, +) / 2
        }
        let (low, high) = (measured(.phi35moe), measured(.mixtral))  // 54 and 120 GFLOP
        XCTAssertTrue((min(low, high)...max(low, high)).contains(factor), "\(factor) not in \(low)...\(high)")
        // L20's 92 SMs: 23 held is a quarter, as 33 of H200's 132.
        let l20 = GPUModel.l20.smSplitFactor(m: 4096, n: mixtral.n, k: mixtral.k, heldSMs: 23)
        XCTAssertEqual(l20, h200.smSplitFactor(m: 4096, n: mixtral.n, k: mixtral.k, heldSMs: 33), accuracy: 1e-12)
        XCTAssertEqual(GPUModel.l20.smSplitFactor(m: 4096, n: mixtral.n, k: mixtral.k, heldSMs: 92), .infinity)
    }

    func testCopyRatesExactAtMeasuredRowsAndBounded() {
        for row in MeasuredTables.copies where row.ctas > 0 {
            let path = CopyPath(rawValue: row.path)!
            XCTAssertEqual(h200.copyRate(path, blocks: row.ctas), row.rate, accuracy: 1, "\(row.path) \(row.ctas)")
        }
        // One block pushes 20.4 GB/s and pulls 7.6; 12 blocks push between 8's and 16's.
        XCTAssertEqual(h200.copyRate(.push, blocks: 1), 20.4e9)
        XCTAssertEqual(h200.copyRate(.pull, blocks: 1), 7.6e9)
        XCTAssertEqual(h200.copyRate(.push, blocks: 12), (162.2e9 + 324.8e9) / 2, accuracy: 1)
        XCTAssertEqual(h200.copyRate(.pull, blocks: 200), 360.9e9)
        XCTAssertEqual(h200.copyRate(.push, blocks: 0), 0)
        // The pull rate never falls as blocks are added.
        let pulls = (1...132).map { h200.copyRate(.pull, blocks: $0) }
        XCTAssertEqual(pulls, pulls.sorted())
    }

    func testCopyRatesAreCappedByTheLink() {
        XCTAssertEqual(GPUModel.linkEfficiency, 361.7 / 450, accuracy: 1e-12)
        // H800: NVLink 400 GB/s both ways, 200 each, 161 achieved: 16 pushing blocks saturate it.
        XCTAssertEqual(GPUModel.h800.copyRate(.push, blocks: 16), 200e9 * 361.7 / 450, accuracy: 1)
        XCTAssertEqual(GPUModel.h800.copyRate(.push, blocks: 4), 81.6e9)
        // L20: PCIe 4.0 x16, about 25 GB/s each way; 2 blocks already reach it.
        XCTAssertEqual(GPUModel.l20.copyRate(.pull, blocks: 132), 32e9 * 361.7 / 450, accuracy: 1)
        XCTAssertEqual(GPUModel.l20.copyRate(.push, blocks: 2), 32e9 * 361.7 / 450, accuracy: 1)
        // A copy costs the latency, then its bytes.
        let seconds = GPUModel.h800.copySeconds(bytes: 1 << 20, .push, blocks: 4)
        XCTAssertEqual(seconds, 9.5e-6 + Double(1 << 20) / 81.6e9, accuracy: 1e-15)
        XCTAssertEqual(GPUModel.h800.copySeconds(bytes: 0, .push, blocks: 8), 0)
    }

    func testTransferLatencyIsTheSmallCopyEngineCopies() {
        let small = MeasuredTables.copies.filter { $0.path == "copy_engine_nvlink" && $0.bytes <= 65536 }
        XCTAssertEqual(small.count, 2)
        for row in small { XCTAssertEqual(h200.transferLatency, row.seconds, accuracy: 0.3e-6) }
    }

    func testElementwiseKernelsCostLaunchAndBytes() {
        let bytes = 256 << 20
        // H200's 256 MiB device-to-device copy read and wrote 512 MiB in 0.1283 ms.
        XCTAssertEqual(h200.elementwiseSeconds(bytes: 2 * bytes), 3e-6 + 0.1283e-3, accuracy: 0.001e-3)
        XCTAssertEqual(GPUModel.l20.elementwiseSeconds(bytes: 0), 3e-6)
        let ratio = (GPUModel.l20.elementwiseSeconds(bytes: bytes) - 3e-6) / (h200.elementwiseSeconds(bytes: bytes) - 3e-6)
        XCTAssertEqual(ratio, 4800 / 864, accuracy: 1e-9)
    }

    func testModelsByName() {
        XCTAssertEqual(GPUModel.named("H800"), .h800)
        XCTAssertEqual(GPUModel.all.map(\.sms), [132, 132, 92])
        XCTAssertNil(GPUModel.named("a100"))
    }
}
