import CometCore
import CometKernels
import CometMPI
import Foundation
import Synchronization

/// The emulated interconnect: every transfer between two ranks takes
/// `latency + bytes / bandwidth`, queued on a link per rank pair or on the rank's
/// port (`Queues`). Data moves at memory speed; the receiver sees it only once the
/// link model says it arrived, and a thread waiting for that sleeps (it burns no
/// CPU). All schedules use the same link, so their times compare.
public struct LinkModel: Sendable, Codable, Equatable, CustomStringConvertible {
    public var name: String
    /// Seconds from the start of a transfer to its first byte.
    public var latency: Double
    /// Bytes per second on one queue (a rank pair's link, or a port's direction);
    /// infinite for `native`.
    public var bandwidth: Double
    /// What a rank's transfers queue on.
    public var queues: Queues
    /// What a GPU's thread blocks copy (a modelled GPU's link); nil: transfers take the
    /// queue's bandwidth whoever moves them.
    public var copyRates: CopyRates?

    /// Bytes/s (this link's bytes) that thread blocks pull from and push to peers, by
    /// blocks (index 0...SMs): a fused kernel's communication blocks move rows no faster,
    /// whatever the port allows. Collectives (copy engines, NCCL) are not capped.
    public struct CopyRates: Sendable, Codable, Equatable {
        public let pull: [Double], push: [Double]
        /// Blocks a fused kernel communicates with when its schedule does not say.
        public let defaultBlocks: Int

        public init(pull: [Double], push: [Double], defaultBlocks: Int) {
            precondition(pull.count == push.count && pull.count > defaultBlocks, "copy rates for every block count up to the SMs")
            (self.pull, self.push, self.defaultBlocks) = (pull, push, defaultBlocks)
        }

        /// The GPU's SMs, the most blocks.
        public var sms: Int { pull.count - 1 }
    }

    /// What a rank's transfers queue on.
    public enum Queues: String, Sendable, Codable {
        /// A link per rank pair, both directions on one queue (the calibrated links):
        /// transfers to different peers overlap.
        case perPeer
        /// The rank's own port, a queue per direction (a GPU's NVLink or PCIe): every
        /// transfer in, from whichever peer, queues on one, every transfer out on the
        /// other. Contention at the far end is not modelled.
        case perPort
    }

    public init(name: String, latency: Double, bandwidth: Double, queues: Queues = .perPeer, copyRates: CopyRates? = nil) {
        self.name = name
        self.latency = latency
        self.bandwidth = bandwidth
        self.queues = queues
        self.copyRates = copyRates
    }

    /// No pacing: transfers take what the memory copy takes.
    public static let native = LinkModel(name: "native", latency: 0, bandwidth: .infinity)

    public var isNative: Bool { latency == 0 && bandwidth == .infinity }

    /// Latency of the links `balanced` makes.
    public static let balancedLatency = 20e-6

    /// A link named `name` on which `exchanges` exchanges of the busiest rank pair's
    /// `bytes` together last `gemmSeconds`. `comet-bench` calibrates `balanced` (the
    /// paper's regime: Megatron's MoE forward spent 47% of its time communicating) on
    /// sequential's forward, a dispatch and a combine per MoE layer against its
    /// forward expert GEMMs, and `balanced-pass` on the forward and backward against
    /// the expert GEMMs of both.
    ///
    /// A dispatch and a combine land on the same queue of `LinkClock`: comet books
    /// its pulls from a peer and its pushes back to it on one link, and an all-to-all
    /// waits for max(sent, received) on each. So the busiest pair's bytes, twice per
    /// pass, are what the busiest link carries under any routing.
    public static func balanced(
        gemmSeconds: Double, busiestPairBytes bytes: Int, exchanges: Int, name: String
    ) -> LinkModel {
        let transfer = max(gemmSeconds / Double(exchanges) - balancedLatency, 1e-6)
        return LinkModel(name: name, latency: balancedLatency, bandwidth: max(Double(bytes), 1) / transfer)
    }

    /// Seconds the busiest link needs for one pass: a dispatch and a combine of the
    /// busiest link's `bytes` (a rank pair's, or a port's: `RoutingPlan.busiestLinkRows`).
    public func passTime(busiestLinkBytes bytes: Int) -> Double { 2 * transferTime(bytes: bytes) }

    /// Seconds the link needs for `bytes` (0 for nothing sent).
    public func transferTime(bytes: Int) -> Double {
        bytes == 0 || isNative ? 0 : latency + Double(bytes) / bandwidth
    }

    /// What collectives' data costs on this link (`CollectiveCost`): free on `native`,
    /// else this link's latency and bandwidth, per rank pair or per port as its queues are.
    public var collectiveCost: CollectiveCost {
        isNative ? .free : CollectiveCost(latency: latency, bandwidth: bandwidth, links: queues == .perPort ? .perPort : .perPair)
    }

    public var description: String {
        isNative ? "native (no pacing)"
            : String(format: "%@ (latency %.0f us, %.3g MB/s %@)", name, latency * 1e6, bandwidth / 1e6,
                     queues == .perPeer ? "per rank pair" : "per port and direction")
    }
}

/// A GPU cluster whose ratio of communication to computation a link reproduces.
public struct DevicePreset: Sendable {
    public let name: String
    /// Expert-GEMM throughput one GPU reaches, FLOP/s.
    public let gemmFLOPs: Double
    /// Bytes per second between two GPUs while all of them exchange at once.
    public let pairBandwidth: Double
    /// Seconds of latency per transfer.
    public let latency: Double

    /// 8 x H800 on NVLink: about 600 TFLOP/s of bf16 expert GEMMs; 200 GB/s per
    /// direction per GPU shared by 7 peers; a few microseconds per transfer.
    public static let h800 = DevicePreset(name: "h800", gemmFLOPs: 600e12, pairBandwidth: 200e9 / 7, latency: 3e-6)
    /// 8 x L20 on PCIe 4.0: about 90 TFLOP/s of bf16 GEMMs; 25 GB/s per direction
    /// per GPU shared by 7 peers; about 10 microseconds per transfer.
    public static let l20 = DevicePreset(name: "l20", gemmFLOPs: 90e12, pairBandwidth: 25e9 / 7, latency: 10e-6)

    /// The link that gives a rank computing at `rankFLOPs` the device's ratio:
    /// time runs slower by device FLOP/s / rank FLOP/s for transfers too. The GPUs
    /// move bf16 (2 bytes) where comet moves Float (4 bytes), so bytes count half.
    ///
    /// The ratio depends on the shape, as on GPUs: GEMM work per row grows with
    /// N K, traffic with N only, so small toy layers are communication-bound.
    public func link(rankFLOPs: Double) -> LinkModel {
        let dilation = gemmFLOPs / rankFLOPs
        return LinkModel(name: name, latency: latency * dilation, bandwidth: 2 * pairBandwidth / dilation)
    }
}

/// When each of this rank's link queues is free again, on the rank's clock. A
/// transfer on a busy queue waits behind the one before it; transfers on different
/// queues overlap. On a device clock the rank's engines run in time order, so
/// transfers are booked in the order of their start times. Per peer, both
/// directions between two ranks share one queue: comet's pulls from a peer and its
/// pushes back to it, and an all-to-all's rows each way. Per port, pulls queue on
/// the way in, pushes on the way out, and an all-to-all's rows on both.
public final class LinkClock: Sendable {
    /// Which way a transfer goes, for queues per port.
    public enum Direction {
        case inbound, outbound, both
    }

    public let model: LinkModel
    public let clock: any Clock
    /// Thread blocks that move this rank's pulls and pushes (`LinkModel.CopyRates`), if
    /// a fused kernel's do; nil: they take the queue's bandwidth.
    public let copyBlocks: Int?
    /// Bytes/s of pulls and pushes.
    private let inboundRate: Double, outboundRate: Double
    private let busyUntil: Mutex<[Double]>

    public init(model: LinkModel, ranks: Int, clock: any Clock, copyBlocks: Int? = nil) {
        self.model = model
        self.clock = clock
        self.copyBlocks = copyBlocks
        let rates = copyBlocks.flatMap { blocks in model.copyRates.map { ($0.pull[blocks], $0.push[blocks]) } }
        (inboundRate, outboundRate) = (min(model.bandwidth, rates?.0 ?? .infinity), min(model.bandwidth, rates?.1 ?? .infinity))
        busyUntil = Mutex([Double](repeating: 0, count: model.queues == .perPeer ? ranks : 2))
    }

    /// Runs the memory copy that moves a transfer booked on this link. On the native
    /// link the copy is the transfer, and device time charges its CPU; on an emulated
    /// link the booking is the transfer, so the copy is the emulation's own work and
    /// is not charged, and a time-only run (`ModelledKernels`) skips it. `body` must not
    /// read the clock.
    public func copy(_ body: () throws -> Void) rethrows {
        if ModelledKernels.isTimeOnly { return }
        model.isNative ? try body() : try chargeAsWaiting(body)
    }

    /// Books `bytes` going `direction` on the link to or from `peer`, a transfer that
    /// started at `start`, at the copy blocks' rate if that is lower; returns when they
    /// arrive. Transfers to oneself are free. On the native link the caller's copy is
    /// the transfer, so the bytes arrive when it has copied them: now.
    public func book(bytes: Int, peer: Int, isSelf: Bool, at start: Double, _ direction: Direction) -> Double {
        if model.isNative { return clock.stamp() }
        guard !isSelf, bytes > 0 else { return start }
        let queues = switch (model.queues, direction) {
        case (.perPeer, _): [peer]
        case (.perPort, .inbound): [0]
        case (.perPort, .outbound): [1]
        case (.perPort, .both): [0, 1]
        }
        let rate = switch direction {
        case .inbound: inboundRate
        case .outbound: outboundRate
        case .both: model.bandwidth
        }
        return busyUntil.withLock { busy in
            let sending = queues.reduce(start) { max($0, busy[$1]) }
            for queue in queues { busy[queue] = sending + Double(bytes) / rate }
            return sending + model.latency + Double(bytes) / rate
        }
    }
}
