import CometMPI
import XCTest

final class LayoutTests: XCTestCase {
    func testResolveFillsMissingSizes() throws {
        XCTAssertEqual(try ParallelLayout.resolve(worldSize: 8, ep: nil, tp: nil, dp: nil),
                       try ParallelLayout(expertParallel: 8))
        XCTAssertEqual(try ParallelLayout.resolve(worldSize: 8, ep: nil, tp: 2, dp: nil),
                       try ParallelLayout(expertParallel: 4, tensorParallel: 2))
        XCTAssertEqual(try ParallelLayout.resolve(worldSize: 8, ep: 2, tp: nil, dp: nil),
                       try ParallelLayout(expertParallel: 2, tensorParallel: 1, dataParallel: 4))
        XCTAssertEqual(try ParallelLayout.resolve(worldSize: 8, ep: nil, tp: 2, dp: 2),
                       try ParallelLayout(expertParallel: 2, tensorParallel: 2, dataParallel: 2))
    }

    func testResolveRejectsLayoutsThatDoNotFit() {
        XCTAssertThrowsError(try ParallelLayout.resolve(worldSize: 3, ep: 2, tp: nil, dp: nil)) {
            XCTAssertEqual($0 as? LayoutError, .doesNotDivide(sizes: "EP=2", product: 2, worldSize: 3))
        }
        XCTAssertThrowsError(try ParallelLayout.resolve(worldSize: 4, ep: 2, tp: 2, dp: 2)) {
            XCTAssertTrue("\($0)".contains("needs 8 ranks, but the job has 4"))
        }
        XCTAssertThrowsError(try ParallelLayout.resolve(worldSize: 8, ep: 3, tp: nil, dp: nil))
        XCTAssertThrowsError(try ParallelLayout.resolve(worldSize: 8, ep: nil, tp: 0, dp: nil)) {
            XCTAssertEqual($0 as? LayoutError, .nonPositive(name: "TP", value: 0))
        }
    }

    func testCoordinatesRoundTripAndTensorGroupsAreContiguous() throws {
        for layout in ParallelLayout.all(worldSize: 8) {
            for rank in 0..<8 {
                let at = layout.coordinates(of: rank)
                XCTAssertEqual(layout.rank(ep: at.ep, tp: at.tp, dp: at.dp), rank)
                XCTAssertEqual(rank / layout.tensorParallel, (rank - at.tp) / layout.tensorParallel)
            }
        }
        XCTAssertEqual(ParallelLayout.all(worldSize: 8).count, 10)
    }
}
