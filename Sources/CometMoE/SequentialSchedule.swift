import CometCore
import CometKernels
import CometMPI

/// The Megatron baseline: all-to-all-v dispatch, then every expert GEMM, then
/// all-to-all-v combine, one after the other with nothing overlapped.
public final class SequentialSchedule: MoESchedule {
    public let name = "sequential"
    public let tiling = ScheduleTiling()
    /// The main thread runs the all-to-alls; the other engines run the GEMMs.
    public let engines: EngineSplit
    let options: ScheduleOptions
    let link: LinkClock
    let device: Device
    let sendRows: RowBuffer, returnedRows: RowBuffer, staging: RowBuffer
    let buffers: ExpertBuffers

    public init(config: MoEConfig, options: ScheduleOptions, link: LinkClock, device: Device) {
        (self.options, self.link, self.device) = (options, link, device)
        engines = options.engines(for: .sequential)
        let n = config.modelWidth
        (sendRows, returnedRows, staging) = (RowBuffer(columns: n), RowBuffer(columns: n), RowBuffer(columns: n))
        buffers = ExpertBuffers(modelWidth: n, hiddenWidth: config.hiddenWidth, activation: config.activation)
    }

    public func forward(_ x: MatrixView, _ call: LayerCall, into y: MatrixView) throws {
        let (plan, timeline) = (call.plan, call.timeline)
        let rows = plan.tokens * plan.topK
        buffers.reserve(rows: plan.receivedRows)
        let send = sendRows.rows(rows), returned = returnedRows.rows(plan.tensorParallel * rows), wire = staging.rows(plan.receivedRows)
        timeline.record(.local, thread: 0, "pack") { HomeRows.pack(x, plan, rows: 0..<rows, into: send) }
        try timeline.record(.comm, thread: 0, "dispatch") { try AllToAll.dispatch(send, plan, group: call.group, link: link, staging: wire, into: buffers.x) }
        try runExpertTasks(call, label: "forward") { experts, expert, rows, b in
            experts.forwardUp(expert, rows: rows, b) + experts.forwardDown(expert, rows: rows, columns: 0..<b.modelWidth, b)
        }
        try timeline.record(.comm, thread: 0, "combine") { try AllToAll.combine(buffers.y, plan, group: call.group, link: link, staging: wire, into: returned) }
        timeline.record(.local, thread: 0, "top-k reduce") {
            HomeRows.reduce(returned, plan, weights: call.routing.weights, columns: 0..<x.columns, into: y)
        }
    }

    public func backward(_ dy: MatrixView, _ call: LayerCall, into dx: MatrixView) throws -> [Float] {
        let (plan, timeline) = (call.plan, call.timeline)
        let rows = plan.tokens * plan.topK
        let send = sendRows.rows(rows), returned = returnedRows.rows(plan.tensorParallel * rows), wire = staging.rows(plan.receivedRows)
        let weightGradients = timeline.record(.local, thread: 0, "pack") {
            let gradients = HomeRows.weightGradients(dy, returned, plan)
            HomeRows.packScaled(dy, plan, weights: call.routing.weights, into: send)
            return gradients
        }
        try timeline.record(.comm, thread: 0, "dispatch") { try AllToAll.dispatch(send, plan, group: call.group, link: link, staging: wire, into: buffers.dy) }
        try runExpertTasks(call, label: "backward") { experts, expert, rows, b in
            experts.backwardDown(expert, rows: rows, b) + experts.backwardUp(expert, rows: rows, columns: 0..<b.modelWidth, b)
        }
        try runExpertTasks(call, label: "weight gradients", wholeExperts: true) { experts, expert, rows, b in
            experts.accumulateDownGradient(expert, rows: rows, b) + experts.accumulateUpGradient(expert, rows: rows, b)
        }
        try timeline.record(.comm, thread: 0, "combine") { try AllToAll.combine(buffers.dx, plan, group: call.group, link: link, staging: wire, into: returned) }
        timeline.record(.local, thread: 0, "top-k reduce") {
            HomeRows.reduce(returned, plan, weights: nil, columns: 0..<dy.columns, into: dx)
        }
        return weightGradients
    }

    /// Nothing is shared between ranks: the buffers go with the object.
    public func release() {}

    /// Runs `work` over every local expert's rows on the GEMM threads: each expert's
    /// rows are split evenly over the threads (or kept whole, for weight gradients,
    /// which accumulate into one matrix per expert).
    private func runExpertTasks(
        _ call: LayerCall, label: String, wholeExperts: Bool = false,
        _ work: @escaping @Sendable (Experts, Int, Range<Int>, ExpertBuffers) -> Double
    ) throws {
        let plan = call.plan, buffers = self.buffers, experts = call.experts
        let parts = wholeExperts ? 1 : engines.gemm
        let tasks = (0..<plan.expertsPerRank).flatMap { expert in
            let rows = plan.expertRows(expert)
            return tiles(rows, size: (rows.count + parts - 1) / parts).map { (expert, $0) }
        }
        try device.workers.parallelFor(threads: engines.gemm, count: tasks.count) { task, thread in
            let (expert, rows) = tasks[task]
            call.timeline.recordGEMM(thread: 1 + thread, label) { plan.grouped(expert, rows) { work(experts, expert, rows, buffers) } }
        }
    }
}
