import CometMPI
import XCTest

/// The alpha-beta formulas of `CollectiveCost`, on round figures: alpha = 10 us,
/// beta = 1 / (1 MB/s), so a byte costs a microsecond.
final class CollectiveCostTests: XCTestCase {
    let cost = CollectiveCost(latency: 10e-6, bandwidth: 1e6)

    func testLongAllReduceTakesTheRing() {
        // 2 (p-1) alpha + 2 (p-1)/p n beta = 14 x 10 us + 1.75 x 80 000 us.
        XCTAssertEqual(cost.allReduce(bytes: 80_000, ranks: 8), 14 * 10e-6 + 1.75 * 0.08, accuracy: 1e-12)
    }

    func testShortAllReduceTakesRecursiveDoubling() {
        // lg p (alpha + n beta) = 3 x (10 + 8) us, against the ring's 14 x 10 + 14 us.
        XCTAssertEqual(cost.allReduce(bytes: 8, ranks: 8), 3 * 18e-6, accuracy: 1e-12)
        // lg p rounds up: 5 ranks take 3 rounds.
        XCTAssertEqual(cost.allReduce(bytes: 8, ranks: 5), 3 * 18e-6, accuracy: 1e-12)
    }

    func testRingsTreesAndBarriers() {
        XCTAssertEqual(cost.allGather(bytes: 4_000, ranks: 4), 3 * 10e-6 + 0.75 * 4e-3, accuracy: 1e-12)
        XCTAssertEqual(cost.reduceScatter(bytes: 4_000, ranks: 4), 3 * 10e-6 + 0.75 * 4e-3, accuracy: 1e-12)
        XCTAssertEqual(cost.broadcast(bytes: 100, ranks: 8), 3 * 110e-6, accuracy: 1e-12)
        XCTAssertEqual(cost.barrier(ranks: 8), 3 * 10e-6, accuracy: 1e-12)
        XCTAssertEqual(cost.barrier(ranks: 2), 10e-6, accuracy: 1e-12)
    }

    func testAllToAllVChargesEachPeerTheLargerDirection() {
        // Peers 0 and 2: max(100, 50) and max(0, 300) bytes; rank 1 itself and empty pairs are free.
        let seconds = cost.allToAllV(sent: [100, 999, 0, 0], received: [50, 999, 300, 0], me: 1)
        XCTAssertEqual(seconds, (10e-6 + 100e-6) + (10e-6 + 300e-6), accuracy: 1e-12)
    }

    func testFreeOneRankAndNoBytesCostNothing() {
        XCTAssertEqual(CollectiveCost.free.allReduce(bytes: 1 << 20, ranks: 8), 0)
        XCTAssertEqual(CollectiveCost.free.barrier(ranks: 8), 0)
        XCTAssertEqual(CollectiveCost.free.allToAllV(sent: [8, 8], received: [8, 8], me: 0), 0)
        XCTAssertTrue(CollectiveCost.free.isFree)
        XCTAssertEqual(cost.allReduce(bytes: 1 << 20, ranks: 1), 0)
        XCTAssertEqual(cost.barrier(ranks: 1), 0)
        XCTAssertEqual(cost.allGather(bytes: 0, ranks: 8), 0)
    }
}
