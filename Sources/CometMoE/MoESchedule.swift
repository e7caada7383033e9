import CometKernels
import CometMPI

/// Everything a schedule needs for one layer call; the same for every schedule.
public struct LayerCall: @unchecked Sendable {
    public let plan: RoutingPlan
    public let routing: Routing
    public let experts: Experts
    /// The expert-parallel group: the ranks that rows move between.
    public let group: Communicator
    public let link: LinkClock
    public let timeline: Timeline
}

/// How rows move between ranks and when the expert GEMMs run: the part of the
/// layer that the three baselines differ in (Megatron's token dispatcher plus
/// the experts' loop). Schedules are swappable behind this interface.
public protocol MoESchedule: AnyObject {
    /// "sequential", "chunked" or "comet".
    var name: String { get }

    /// y [T, N] = sum_j w_tj FFN_e(t,j)(x_t) for x [T, N]; keeps what `backward` needs.
    func forward(_ x: MatrixView, _ call: LayerCall, into y: MatrixView) throws

    /// dx [T, N] through the experts (overwritten) for dy [T, N], after `forward`
    /// with the same call; accumulates the experts' weight gradients and returns
    /// dL/dw [T, k] for the router.
    func backward(_ dy: MatrixView, _ call: LayerCall, into dx: MatrixView) throws -> [Float]
}

/// Threads and tile sizes of a schedule.
public struct ScheduleOptions: Sendable, Codable, Equatable {
    /// Communicator threads per rank (comet; the chunked schedule uses one).
    public var commThreads = 1
    /// GEMM threads per rank.
    public var gemmThreads = 1
    /// Rows per layer0 GEMM tile (comet).
    public var tileRows = 128
    /// Columns per layer1 column block (comet).
    public var blockColumns = 128
    /// Chunks the chunked schedule pipelines.
    public var chunks = 4

    public init() {}

    public func validate() throws {
        for (name, value) in [("communicator threads", commThreads), ("GEMM threads", gemmThreads),
                              ("tile rows", tileRows), ("block columns", blockColumns), ("chunks", chunks)] where value < 1 {
            throw MoEConfigError("\(name) must be at least 1, got \(value)")
        }
    }
}
