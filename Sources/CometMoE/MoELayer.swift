import CometCore
import CometKernels
import CometMPI

/// One MoE layer as training uses it: router, routing plan, experts and a
/// schedule, each a separate part (as Megatron-Core splits them).
///
/// The layer runs on a group of W = EP x TP ranks (group rank = tp + TP ep). Rank
/// (ep, tp) holds experts ep E/EP ..< (ep + 1) E/EP, and of each the K-shard tp
/// (see `Experts`). The router is replicated.
public final class MoELayer {
    public let config: MoEConfig
    public let group: Communicator
    /// TP: ranks that share each expert's K dimension.
    public let tensorParallel: Int
    public let router: Router
    public let experts: Experts
    public let schedule: any MoESchedule
    /// The emulated interconnect every transfer of this layer is booked on.
    public let link: LinkClock
    /// What this rank's threads did during the last call.
    public let timeline: Timeline
    private var saved: (x: MatrixView, call: LayerCall)?

    /// The routing plan of the last forward.
    public var lastPlan: RoutingPlan? { saved?.call.plan }

    /// The layer's tensors on rank `rank` of a group of `ranks` = EP x `tensorParallel`,
    /// named under `prefix`: the router's gate and this rank's experts.
    public static func parameterTensors(
        config: MoEConfig, ranks: Int, rank: Int, tensorParallel: Int = 1, prefix: String
    ) -> [ParameterSet.Tensor] {
        let perRank = config.expertsPerRank(expertParallel: ranks / tensorParallel)
        return Router.parameterTensors(config: config, prefix: "\(prefix)router.")
            + Experts.parameterTensors(config: config, firstExpert: rank / tensorParallel * perRank, count: perRank,
                                       shards: tensorParallel, prefix: "\(prefix)experts.")
    }

    /// Builds the layer on `group` (collective when the schedule allocates windows):
    /// a schedule of `kind` with `options`, its rows moving on `link`, running on
    /// `device`; `forcePutGet` makes comet use MPI_Put/MPI_Get even on one node. Its
    /// weights live in `parameters` under `prefix` (see `parameterTensors`) or in an
    /// allocation of its own.
    public init(
        config: MoEConfig, group: Communicator, tensorParallel: Int = 1, schedule kind: ScheduleKind, options: ScheduleOptions,
        link: LinkModel, device: Device, forcePutGet: Bool = false, parameters: ParameterSet? = nil, prefix: String = ""
    ) throws {
        guard group.size % tensorParallel == 0 else {
            throw InputError("TP=\(tensorParallel) does not divide the layer's \(group.size) ranks")
        }
        try config.validate(expertParallel: group.size / tensorParallel, tensorParallel: tensorParallel)
        self.config = config
        // The layer's transfers are booked on `link`; its group's collectives carry
        // time but cost nothing of their own, so no byte is counted twice; on an
        // emulated link, neither is the CPU that MPI spends copying the rows.
        self.group = group.withCost(link.isNative ? .free : .bookedElsewhere)
        let group = self.group
        self.tensorParallel = tensorParallel
        let parameters = parameters
            ?? ParameterSet(MoELayer.parameterTensors(config: config, ranks: group.size, rank: group.rank,
                                                      tensorParallel: tensorParallel, prefix: prefix))
        router = Router(config: config, parameters: parameters, prefix: "\(prefix)router.")
        let perRank = config.expertsPerRank(expertParallel: group.size / tensorParallel)
        experts = Experts(config: config, firstExpert: group.rank / tensorParallel * perRank, count: perRank,
                          shard: group.rank % tensorParallel, shards: tensorParallel, parameters: parameters,
                          prefix: "\(prefix)experts.")
        self.link = LinkClock(model: link, ranks: group.size, clock: device.clock,
                              copyBlocks: try options.copyBlocks(for: kind, on: link))
        timeline = Timeline(clock: device.clock)
        schedule = try kind.make(config: config, options: options, link: self.link, device: device, group: group,
                                 tensorParallel: tensorParallel, forcePutGet: forcePutGet)
    }

    /// y [T, N] for x [T, N]. x must stay unchanged until `backward`. Collective.
    @discardableResult
    public func forward(_ x: MatrixView, into y: MatrixView) throws -> Routing {
        timeline.reset()
        let routing = timeline.record(.local, thread: 0, "route") { router.forward(x) }
        let plan = try timeline.record(.comm, thread: 0, "plan") {
            try RoutingPlan(choices: routing.choices, tokens: x.rows, topK: config.topK, experts: config.experts, group: group,
                            tensorParallel: tensorParallel)
        }
        let call = LayerCall(plan: plan, routing: routing, experts: experts, group: group, timeline: timeline)
        try schedule.forward(x, call, into: y)
        saved = (x, call)
        return routing
    }

    /// dx [T, N] (overwritten) for dy [T, N] after `forward`; accumulates the
    /// experts' and the router's gradients. Collective.
    public func backward(_ dy: MatrixView, auxLossGradient: Float, into dx: MatrixView) throws {
        guard let (x, call) = saved else { preconditionFailure("backward before forward") }
        timeline.reset()
        let weightGradients = try schedule.backward(dy, call, into: dx)
        timeline.record(.local, thread: 0, "router backward") {
            router.backward(x, call.routing, weightGradients: weightGradients, auxLossGradient: auxLossGradient, inputGradient: dx)
        }
    }

    /// Gives back the schedule's shared resources (comet's window); the layer is
    /// unusable afterwards. Collective: every rank releases its layers in the same order.
    public func release() throws { try schedule.release() }

    /// Sets every accumulated gradient to zero.
    public func zeroGradients() {
        router.gateGradient.fill(0)
        for gradient in experts.upGradient + experts.downGradient { gradient.fill(0) }
    }
}
