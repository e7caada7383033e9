import CometKernels
import XCTest

final class GEMMTests: XCTestCase {
    /// Fills a buffer with values from `seed`.
    private func randomBuffer(_ count: Int, seed: UInt64) -> UnsafeMutableBufferPointer<Float> {
        var generator = SeededGenerator(seed: seed)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        for i in buffer.indices { buffer[i] = generator.uniform(1) }
        return buffer
    }

    private func assertClose(_ got: MatrixView, _ want: MatrixView, file: StaticString = #filePath, line: UInt = #line) {
        var scale: Float = 0, error: Float = 0
        for i in 0..<want.rows {
            for j in 0..<want.columns {
                scale = max(scale, abs(want[i, j]))
                error = max(error, abs(got[i, j] - want[i, j]))
            }
        }
        XCTAssertLessThanOrEqual(error, 1e-5 * max(scale, 1), "max error \(error) at scale \(scale)", file: file, line: line)
    }

    func testOddShapesAndTransposes() {
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 1, 33), (31, 29, 1), (65, 47, 129)] {
            for transA in [Transpose.none, .transposed] {
                for transB in [Transpose.none, .transposed] {
                    let a = randomBuffer(m * k, seed: 1), b = randomBuffer(k * n, seed: 2)
                    let c = randomBuffer(m * n, seed: 3), reference = randomBuffer(m * n, seed: 3)
                    defer { [a, b, c, reference].forEach { $0.deallocate() } }
                    let viewA = transA == .none ? MatrixView(a, rows: m, columns: k) : MatrixView(a, rows: k, columns: m)
                    let viewB = transB == .none ? MatrixView(b, rows: k, columns: n) : MatrixView(b, rows: n, columns: k)
                    let viewC = MatrixView(c, rows: m, columns: n), viewReference = MatrixView(reference, rows: m, columns: n)
                    gemm(viewA, viewB, into: viewC, transA: transA, transB: transB, alpha: 0.5, beta: 2)
                    referenceGEMM(viewA, viewB, into: viewReference, transA: transA, transB: transB, alpha: 0.5, beta: 2)
                    assertClose(viewC, viewReference)
                }
            }
        }
    }

    /// Operands that are tiles of larger buffers: rows, columns and a block of C.
    /// Elements of C outside the block stay untouched.
    func testSubViews() {
        let a = randomBuffer(40 * 50, seed: 4), b = randomBuffer(60 * 30, seed: 5)
        let c = randomBuffer(45 * 35, seed: 6), reference = UnsafeMutableBufferPointer<Float>.allocate(capacity: 45 * 35)
        defer { [a, b, c, reference].forEach { $0.deallocate() } }
        _ = reference.initialize(from: c)
        let tileA = MatrixView(a, rows: 40, columns: 50).rows(3..<24).columns(5..<42)      // [21, 37]
        let tileB = MatrixView(b, rows: 60, columns: 30).rows(10..<47).columns(2..<29)     // [37, 27]
        let tileC = MatrixView(c, rows: 45, columns: 35).rows(7..<28).columns(4..<31)      // [21, 27]
        let tileReference = MatrixView(reference, rows: 45, columns: 35).rows(7..<28).columns(4..<31)
        gemm(tileA, tileB, into: tileC, beta: 1)
        referenceGEMM(tileA, tileB, into: tileReference, beta: 1)
        assertClose(MatrixView(c, rows: 45, columns: 35), MatrixView(reference, rows: 45, columns: 35))
        XCTAssertEqual(c[0], reference[0])
        XCTAssertEqual(c[45 * 35 - 1], reference[45 * 35 - 1])

        // A transposed tile: op(A) = tileᵀ.
        let transposed = MatrixView(a, rows: 40, columns: 50).rows(2..<39).columns(1..<22)  // [37, 21]
        gemm(transposed, tileB, into: tileC, transA: .transposed)
        referenceGEMM(transposed, tileB, into: tileReference, transA: .transposed)
        assertClose(tileC, tileReference)
    }

    func testKernelCheckPassesForTheLoadedKernel() {
        XCTAssertTrue(OpenBLAS.verifyKernel().passed)
    }

    func testGenericCoresAreReplacedOnlyWhenTheCPUSupportsBetter() {
        XCTAssertEqual(OpenBLAS.preferredCore(instead: "Prescott", avx512: true, avx2: true), "SkylakeX")
        XCTAssertEqual(OpenBLAS.preferredCore(instead: "Prescott", avx512: false, avx2: true), "Haswell")
        XCTAssertNil(OpenBLAS.preferredCore(instead: "Prescott", avx512: false, avx2: false))
        XCTAssertNil(OpenBLAS.preferredCore(instead: "Cooperlake", avx512: true, avx2: true))
        XCTAssertNil(OpenBLAS.preferredCore(instead: "Haswell", avx512: false, avx2: true))
    }
}

/// Sampled GEMM costs (`GEMMCosts`): the same figure on every call of a size,
/// straight lines between sampled powers of two, and the least figure kept when
/// tables are merged.
final class GEMMCostsTests: XCTestCase {
    private let kind = GEMMCosts.Kind(n: 64, transA: .none, transB: .none, lda: 96, ldb: 64, ldc: 64, accumulates: false)

    func testSampledOnceThenTheSameEveryCall() {
        let costs = GEMMCosts()
        let first = costs.seconds(m: 32, k: 64, kind)
        XCTAssertGreaterThan(first, 0)
        XCTAssertEqual(costs.seconds(m: 32, k: 64, kind), first)
        XCTAssertEqual(costs.entries.map { [$0.m, $0.k] }, [[32, 64]])
    }

    func testInterpolatesBetweenPowersOfTwo() {
        let costs = GEMMCosts()
        costs.insert([(16, 64, 1.0), (32, 64, 2.0), (16, 128, 3.0), (32, 128, 6.0)].map {
            GEMMCosts.Entry(kind: kind, m: $0.0, k: $0.1, seconds: $0.2)
        })
        XCTAssertEqual(costs.seconds(m: 16, k: 64, kind), 1.0)
        XCTAssertEqual(costs.seconds(m: 24, k: 64, kind), 1.5, accuracy: 1e-12)
        XCTAssertEqual(costs.seconds(m: 16, k: 96, kind), 2.0, accuracy: 1e-12)
        XCTAssertEqual(costs.seconds(m: 24, k: 96, kind), (2.0 + 4.0) / 2, accuracy: 1e-12)
        XCTAssertEqual(costs.entries.count, 4, "sizes inside the table sample nothing")
    }

    func testMergingKeepsTheLeast() {
        let costs = GEMMCosts()
        costs.insert([GEMMCosts.Entry(kind: kind, m: 8, k: 8, seconds: 2)])
        costs.insert([GEMMCosts.Entry(kind: kind, m: 8, k: 8, seconds: 1), GEMMCosts.Entry(kind: kind, m: 4, k: 8, seconds: 3)])
        costs.insert([GEMMCosts.Entry(kind: kind, m: 8, k: 8, seconds: 5)])
        XCTAssertEqual(costs.entries.map(\.seconds), [3, 1])
    }
}

/// Element-wise kernels' sampled rates (`ElementwiseCosts`): the least seconds per
/// element of a kernel's first calls, then fixed; a table's rate settles it at once.
final class ElementwiseCostsTests: XCTestCase {
    func testTheLeastOfTheFirstCallsThenFixed() {
        let costs = ElementwiseCosts()
        XCTAssertEqual(costs.seconds("copy", elements: 100, measured: 3e-6), 3e-6, accuracy: 1e-18)
        XCTAssertEqual(costs.seconds("copy", elements: 10, measured: 1e-7), 1e-7, accuracy: 1e-18, "10 ns per element now")
        XCTAssertEqual(costs.seconds("copy", elements: 100, measured: 5e-5), 1e-6, accuracy: 1e-18, "a slower call keeps the rate")
        for _ in 0..<(ElementwiseCosts.samples - 3) { _ = costs.seconds("copy", elements: 1, measured: 1) }
        XCTAssertEqual(costs.seconds("copy", elements: 1, measured: 1e-12), 1e-8, accuracy: 1e-18,
                       "after \(ElementwiseCosts.samples) calls the rate no longer moves")
        XCTAssertEqual(costs.entries.map(\.kernel), ["copy"])
    }

    func testATablesRateSettlesAKernel() {
        let costs = ElementwiseCosts()
        costs.insert([("gelu forward", 2e-9)])
        XCTAssertEqual(costs.seconds("gelu forward", elements: 1000, measured: 1e-9), 2e-6, accuracy: 1e-18)
        costs.insert([("gelu forward", 1e-9), ("gelu forward", 4e-9)])
        XCTAssertEqual(costs.entries.first?.secondsPerElement, 1e-9, "merging keeps the least")
    }
}
