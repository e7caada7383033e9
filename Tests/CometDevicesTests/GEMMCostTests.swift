import XCTest

@testable import CometDevices

/// Expert-GEMM costs against h200_bf16_expert_gemm.csv, and how they carry over.
final class GEMMCostTests: XCTestCase {
    let rows = MeasuredTables.expertGEMM

    func testTablesLoadFromTheLibraryAlone() {
        // Compiled in: no file is read, so ../shared (or the repository) need not exist.
        XCTAssertEqual(rows.count, 3 * 4 * 2 * 8)
        XCTAssertEqual(MeasuredTables.smSplit.count, 3 * 3 * 2 * 8)
        XCTAssertEqual(MeasuredTables.copies.count, 3 * 11 + 5)
        let first = rows[0]
        XCTAssertEqual(first.shape, ExpertShape(.mixtral, tp: 1, .gemm1))
        XCTAssertEqual(first.m, 128)
        XCTAssertEqual(first.seconds, 0.0341e-3, accuracy: 1e-15)
    }

    func testExactAtEveryMeasuredRow() {
        for row in rows {
            let seconds = GPUModel.h200.gemmSeconds(row.shape, m: row.m)
            XCTAssertEqual(seconds, row.seconds, accuracy: row.seconds * 1e-12, "\(row.shape) m \(row.m)")
        }
    }

    func testBetweenMeasuredRowsIsAPowerLawWithinTheNeighbours() {
        let shape = ExpertShape(.mixtral, tp: 2, .gemm2)
        let measured = rows.filter { $0.shape == shape }.sorted { $0.m < $1.m }
        for (low, high) in zip(measured, measured.dropFirst()) {
            let middle = (low.m + high.m) / 2
            let seconds = GPUModel.h200.gemmSeconds(shape, m: middle)
            let t = log(Double(middle) / Double(low.m)) / log(Double(high.m) / Double(low.m))
            XCTAssertEqual(seconds, low.seconds * pow(high.seconds / low.seconds, t), accuracy: seconds * 1e-9)
            XCTAssertGreaterThanOrEqual(seconds, min(low.seconds, high.seconds))
            XCTAssertLessThanOrEqual(seconds, max(low.seconds, high.seconds))
        }
        // 4096 -> 8192 rows: between 0.3116 and 0.6729 ms.
        let between = GPUModel.h200.gemmSeconds(shape, m: 6000)
        XCTAssertTrue((0.3116e-3...0.6729e-3).contains(between))
    }

    func testBeyondMeasuredRowsFollowsTheRoofline() {
        let shape = ExpertShape(.mixtral, tp: 1, .gemm1)
        let last = GPUModel.h200.gemmSeconds(shape, m: 16384)
        // Compute-bound: twice the rows, twice the time.
        XCTAssertEqual(GPUModel.h200.gemmSeconds(shape, m: 32768), 2 * last, accuracy: last * 1e-9)
        // Fewer rows than measured: no faster than the memory-bound smallest row allows.
        let first = GPUModel.h200.gemmSeconds(shape, m: 128)
        XCTAssertLessThanOrEqual(GPUModel.h200.gemmSeconds(shape, m: 16), first)
        XCTAssertGreaterThan(GPUModel.h200.gemmSeconds(shape, m: 16), 0.5 * first)
    }

    func testRooflineOutsideTheTable() {
        let table = GEMMTable.shared
        XCTAssertEqual(table.efficiency, 0.63, accuracy: 0.005, "the fitted efficiency the docs state")
        XCTAssertEqual(table.floorSeconds, 11.2e-6, accuracy: 1e-12)
        let h200 = GPUModel.h200
        // A large square GEMM is compute-bound: FLOPs at 63% of 989.4 TFLOP/s.
        let big = 8192
        XCTAssertEqual(
            h200.gemmSeconds(m: big, n: big, k: big), 2 * pow(Double(big), 3) / (989.4e12 * table.efficiency),
            accuracy: 1e-12)
        // A thin one is memory-bound: its bytes at 4184 GB/s.
        let bytes = Double(2 * (65536 + 65536 * 8192 + 8192))  // A, B and C of bf16
        XCTAssertEqual(h200.gemmSeconds(m: 1, n: 8192, k: 65536), bytes / 4184e9, accuracy: 1e-12)
        // A tiny one costs the floor.
        XCTAssertEqual(h200.gemmSeconds(m: 8, n: 8, k: 8), 11.2e-6, accuracy: 1e-12)
        // The roofline is within 2x of every measured row.
        for row in rows {
            let ratio = h200.rooflineSeconds(m: row.m, n: row.shape.n, k: row.shape.k) / row.seconds
            XCTAssertTrue((0.5...2).contains(ratio), "\(row.shape) m \(row.m): roofline / measured \(ratio)")
        }
    }

    func testOtherGPUsScaleByPeakRatios() {
        // Mixtral's and Phi's unsharded GEMMs are compute-bound on all three from m 512 on:
        // H800 as fast as H200 (the same tensor cores), L20 slower by 989.4 / 119.5.
        for row in rows where row.m >= 512 && row.shape.tp == 1 && row.shape.model != .qwen2moe {
            XCTAssertEqual(GPUModel.h800.gemmSeconds(row.shape, m: row.m), row.seconds, accuracy: row.seconds * 1e-9)
            let l20 = GPUModel.l20.gemmSeconds(row.shape, m: row.m)
            XCTAssertEqual(l20, row.seconds * 989.4 / 119.5, accuracy: l20 * 1e-9, "\(row.shape) m \(row.m)")
        }
        // Memory-bound (one row of mixtral's widest GEMM): by memory bandwidth instead.
        let shape = ExpertShape(.mixtral, tp: 1, .gemm2)
        let ratio = GPUModel.h800.gemmSeconds(shape, m: 1) / GPUModel.h200.gemmSeconds(shape, m: 1)
        XCTAssertEqual(ratio, 4.8 / 3.35, accuracy: 1e-9)
        // At the latency floor every GPU costs the same.
        XCTAssertEqual(GPUModel.l20.gemmSeconds(m: 4, n: 4, k: 4), GPUModel.h200.gemmSeconds(m: 4, n: 4, k: 4))
    }

    func testGenericEntryUsesTheTableForAMeasuredShape() {
        let row = rows.first { $0.shape == ExpertShape(.qwen2moe, tp: 8, .gemm2) && $0.m == 2048 }!
        XCTAssertEqual(GPUModel.h200.gemmSeconds(m: 2048, n: 2048, k: 176), row.seconds, accuracy: 1e-15)
        // Transposed (n, k) is another shape (gemm1), measured separately.
        XCTAssertEqual(GPUModel.h200.gemmSeconds(m: 2048, n: 176, k: 2048), 0.0124e-3, accuracy: 1e-15)
    }
}
