import CometCore
import CometMoE
import CometMPI
import XCTest

/// The balanced links: their exchanges of the busiest pair's bytes last the GEMM seconds they are calibrated on.
final class LinkModelTests: XCTestCase {
    func testBalancedForwardExchangesTakeTheForwardGEMMs() {
        let bytes = 3 << 20
        let forward = LinkModel.balanced(gemmSeconds: 0.3, busiestPairBytes: bytes, exchanges: 2, name: "balanced")
        XCTAssertEqual(forward.name, "balanced")
        XCTAssertEqual(forward.latency, LinkModel.balancedLatency)
        XCTAssertEqual(forward.passTime(busiestLinkBytes: bytes), 0.3, accuracy: 1e-12, "a dispatch and a combine")

        // Whole-pass calibration: four exchanges (both passes) against forward + backward GEMMs three times as long.
        let pass = LinkModel.balanced(gemmSeconds: 0.9, busiestPairBytes: bytes, exchanges: 4, name: "balanced-pass")
        XCTAssertEqual(2 * pass.passTime(busiestLinkBytes: bytes), 0.9, accuracy: 1e-12)
        XCTAssertLessThan(pass.bandwidth, forward.bandwidth, "the whole-pass link is slower when the backward's GEMMs are twice the forward's")
    }

    func testBalancedSpreadsTheGEMMsOverEveryLayersExchanges() {
        let link = LinkModel.balanced(gemmSeconds: 0.4, busiestPairBytes: 1 << 20, exchanges: 2 * 4, name: "balanced")
        XCTAssertEqual(link.transferTime(bytes: 1 << 20), 0.05, accuracy: 1e-12, "4 layers, a dispatch and a combine each")
    }

    func testCollectivesCostWhatTheLinkSays() {
        XCTAssertEqual(LinkModel.native.collectiveCost, .free)
        let link = LinkModel(name: "slow", latency: 50e-6, bandwidth: 0.5e9)
        XCTAssertEqual(link.collectiveCost, CollectiveCost(latency: 50e-6, bandwidth: 0.5e9))
    }

    /// Per peer, transfers to different peers overlap; per port, transfers in queue on
    /// one direction and transfers out on the other, and an all-to-all's on both.
    func testTransfersQueuePerPeerOrPerPortAndDirection() {
        let (megabyte, rate) = (1_000_000, 1e9)
        let pairs = LinkClock(model: LinkModel(name: "pairs", latency: 0, bandwidth: rate), ranks: 4, clock: WallClock())
        XCTAssertEqual(pairs.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .inbound), 1e-3, accuracy: 1e-12)
        XCTAssertEqual(pairs.book(bytes: megabyte, peer: 2, isSelf: false, at: 0, .inbound), 1e-3, accuracy: 1e-12)
        XCTAssertEqual(pairs.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .outbound), 2e-3, accuracy: 1e-12,
                       "a pair's two directions share its link")

        let port = LinkClock(model: LinkModel(name: "port", latency: 1e-5, bandwidth: rate, queues: .perPort), ranks: 4,
                             clock: WallClock())
        XCTAssertEqual(port.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .inbound), 1.01e-3, accuracy: 1e-12)
        XCTAssertEqual(port.book(bytes: megabyte, peer: 2, isSelf: false, at: 0, .inbound), 2.01e-3, accuracy: 1e-12,
                       "transfers in from two peers share the port")
        XCTAssertEqual(port.book(bytes: megabyte, peer: 3, isSelf: false, at: 0, .outbound), 1.01e-3, accuracy: 1e-12,
                       "a transfer out runs beside them")
        XCTAssertEqual(port.book(bytes: megabyte, peer: 3, isSelf: false, at: 0, .both), 3.01e-3, accuracy: 1e-12,
                       "an exchange waits for both directions")
        XCTAssertEqual(port.book(bytes: megabyte, peer: 0, isSelf: true, at: 5, .both), 5, "transfers to oneself are free")
    }
}
