import CometMPI
import XCTest

/// The alpha-beta formulas of `CollectiveCost`, on round figures: alpha = 10 us,
/// beta = 1 / (1 MB/s), so a byte costs a microsecond.
final class CollectiveCostTests: XCTestCase {
    let cost = CollectiveCost(latency: 10e-6, bandwidth: 1e6)

    func testLongAllReduceIsAReduceScatterAndAnAllGather() {
        // 2 (alpha + n/p beta) = 2 x (10 us + 10 000 us).
        XCTAssertEqual(cost.allReduce(bytes: 80_000, ranks: 8), 2 * (10e-6 + 0.01), accuracy: 1e-12)
    }

    func testShortAllReduceTakesTheFasterOfTheTwo() {
        // lg p (alpha + n beta) = 3 x (10 + 8) us, against the direct 2 x (10 + 1) us: the direct one.
        XCTAssertEqual(cost.allReduce(bytes: 8, ranks: 8), 2 * 11e-6, accuracy: 1e-12)
        // With a long latency, recursive doubling: 2 ranks, lg p = 1 round of 1 ms + 8 us, against 2 x (1 ms + 4 us).
        let slow = CollectiveCost(latency: 1e-3, bandwidth: 1e6)
        XCTAssertEqual(slow.allReduce(bytes: 8, ranks: 2), 1e-3 + 8e-6, accuracy: 1e-12)
        // lg p rounds up: 3 ranks would take 2 rounds of 1 ms + 8 us, more than 2 x (1 ms + 8/3 us).
        XCTAssertEqual(slow.allReduce(bytes: 8, ranks: 3), 2 * (1e-3 + 8e-6 / 3), accuracy: 1e-12)
    }

    func testDirectCollectivesAndBarriers() {
        XCTAssertEqual(cost.allGather(bytes: 4_000, ranks: 4), 10e-6 + 1e-3, accuracy: 1e-12)
        XCTAssertEqual(cost.reduceScatter(bytes: 4_000, ranks: 4), 10e-6 + 1e-3, accuracy: 1e-12)
        XCTAssertEqual(cost.broadcast(bytes: 100, ranks: 8), 110e-6, accuracy: 1e-12)
        XCTAssertEqual(cost.barrier(ranks: 8), 3 * 10e-6, accuracy: 1e-12)
        XCTAssertEqual(cost.barrier(ranks: 2), 10e-6, accuracy: 1e-12)
    }

    func testAllToAllVTakesTheBusiestPair() {
        // Peers 0 and 2 at once: max(100, 50) and max(0, 300) bytes; rank 1 itself is free.
        let seconds = cost.allToAllV(sent: [100, 999, 0, 0], received: [50, 999, 300, 0], me: 1)
        XCTAssertEqual(seconds, 10e-6 + 300e-6, accuracy: 1e-12)
    }

    func testPerPortLinksCarryEveryPeersBytesThroughOnePort() {
        let port = CollectiveCost(latency: 10e-6, bandwidth: 1e6, links: .perPort)
        // 2 (alpha + (p-1)/p n beta): 7/8 of 80 000 bytes through the port, twice.
        XCTAssertEqual(port.allReduce(bytes: 80_000, ranks: 8), 2 * (10e-6 + 0.07), accuracy: 1e-12)
        XCTAssertEqual(port.allGather(bytes: 4_000, ranks: 4), 10e-6 + 3e-3, accuracy: 1e-12)
        XCTAssertEqual(port.broadcast(bytes: 100, ranks: 8), 110e-6, accuracy: 1e-12)
        // All bytes sent (100 + 0) against all received (50 + 300); rank 1's own share is free.
        XCTAssertEqual(port.allToAllV(sent: [100, 999, 0, 0], received: [50, 999, 300, 0], me: 1), 10e-6 + 350e-6,
                       accuracy: 1e-12)
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
