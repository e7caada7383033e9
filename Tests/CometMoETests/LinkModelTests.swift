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
        let ports = LinkModel(name: "gpu", latency: 10e-6, bandwidth: 1e9, queues: .perPort)
        XCTAssertEqual(ports.collectiveCost, CollectiveCost(latency: 10e-6, bandwidth: 1e9, links: .perPort))
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

    /// A fused kernel's communication blocks move pulls and pushes no faster than they
    /// copy (`CopyRates`); collectives keep the port's bandwidth; comet's split must
    /// leave the GEMMs SMs, and needs a GPU.
    func testCopyBlocksCapPullsAndPushes() throws {
        let megabyte = 1_000_000, rate = 1e9
        let rates = LinkModel.CopyRates(pull: (0...4).map { Double($0) * 1e8 }, push: (0...4).map { Double($0) * 4e8 }, defaultBlocks: 2)
        let model = LinkModel(name: "gpu", latency: 1e-5, bandwidth: rate, queues: .perPort, copyRates: rates)
        let link = LinkClock(model: model, ranks: 4, clock: WallClock(), copyBlocks: 2)
        XCTAssertEqual(link.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .inbound), 5.01e-3, accuracy: 1e-12, "2 blocks pull 2e8 B/s")
        XCTAssertEqual(link.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .outbound), 1.26e-3, accuracy: 1e-12,
                       "2 blocks push 8e8 B/s")
        let wide = LinkClock(model: model, ranks: 4, clock: WallClock(), copyBlocks: 3)
        XCTAssertEqual(wide.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .outbound), 1.01e-3, accuracy: 1e-12,
                       "3 blocks push 1.2e9 B/s, more than the port's 1e9")
        let free = LinkClock(model: model, ranks: 4, clock: WallClock())
        XCTAssertEqual(free.book(bytes: megabyte, peer: 1, isSelf: false, at: 0, .both), 1.01e-3, accuracy: 1e-12)
        var options = ScheduleOptions()
        XCTAssertEqual(try options.copyBlocks(for: .comet, on: model), 2, "the GPU's default")
        XCTAssertNil(try options.copyBlocks(for: .sequential, on: model))
        options.commSMs = 4
        XCTAssertThrowsError(try options.copyBlocks(for: .comet, on: model), "no SM left for the GEMMs")
        XCTAssertThrowsError(try options.copyBlocks(for: .cometRows, on: .native), "no GPU")
    }
}
