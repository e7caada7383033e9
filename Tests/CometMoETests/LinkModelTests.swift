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
        XCTAssertEqual(forward.passTime(busiestPairBytes: bytes), 0.3, accuracy: 1e-12, "a dispatch and a combine")

        // Whole-pass calibration: four exchanges (both passes) against forward + backward GEMMs three times as long.
        let pass = LinkModel.balanced(gemmSeconds: 0.9, busiestPairBytes: bytes, exchanges: 4, name: "balanced-pass")
        XCTAssertEqual(2 * pass.passTime(busiestPairBytes: bytes), 0.9, accuracy: 1e-12)
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
}
