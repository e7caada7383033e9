import CometCore
import CometKernels
import CometMPI

/// Comet's fine-grained schedule (MLSys 2025), on CPU ranks.
///
/// Each rank's symmetric window (`CometWindow`) holds its rows in send order, read
/// by the experts' ranks, and the rows that come back, written by them. A layer
/// call is one `CometPass` on the rank's worker pool, whose engines `engines` divides
/// into communicator threads and GEMM threads:
///
/// - layer0 (dispatch + GEMM1): communicator threads pull rows from every source
///   with one-sided gets, `tileRows` rows at a time, own rank first, then one tile
///   from each of rank+1, rank+2, ... in turn (`rowTileOrder`), and post each tile
///   on a `LandingBoard`; GEMM threads compute rows as soon as they have landed
///   (`PullRows`, `ComputeRows`).
/// - layer1 (GEMM2 + combine) is a strategy (`Layer1Strategy`): the paper's column
///   blocks across all local experts, each pushed home and top-k-reduced there while
///   the next block computes (`ColumnBlocks`, the `comet` schedule); or each landed
///   row group's GEMM2 right after its GEMM1, pushed home at once (`RowPushes`, the
///   `comet-rows` schedule).
///
/// Backward runs the dual patterns: the backward of combine is a dispatch (pull
/// w * dy; row tiles of dGEMM2, the activation and dW2 as rows land), the backward
/// of dispatch is a combine (dx pushed home and summed); dW1 fills the tail.
public final class CometSchedule: MoESchedule {
    /// How layer1 (GEMM2 and the combine) is cut: which `Layer1Strategy` each pass runs.
    public enum Layer1: Sendable {
        /// As in the paper: once all of layer0 is done, column blocks over every row,
        /// each pushed home and top-k-reduced there while the next block computes
        /// (`ColumnBlocks`).
        case columns
        /// Right after a landed row group's GEMM1, its GEMM2 over every column, pushed
        /// home at once; the home reduces when every rank's rows are in (`RowPushes`).
        /// The combine then queues right behind the dispatch on each link, and layer1's
        /// GEMMs spread over layer0's, at the price of a reduce that is not overlapped.
        case rows

        var scheduleName: String { self == .columns ? "comet" : "comet-rows" }

        /// Layer1's blocks of `0..<modelWidth` on `link`: column blocks, or by rows one
        /// block of every column (its flags and stamps say when all rows are home).
        func blocks(_ options: ScheduleOptions, link: LinkModel, modelWidth: Int) -> [Range<Int>] {
            self == .rows ? [0..<modelWidth] : options.columnBlocks(for: link, modelWidth: modelWidth)
        }

        func strategy(for pass: CometPass) -> any Layer1Strategy {
            self == .columns ? ColumnBlocks(pass) : RowPushes(pass)
        }
    }

    public var name: String { layer1.scheduleName }
    public var tiling: ScheduleTiling {
        ScheduleTiling(tileRows: tileRows, columnBlocks: layer1 == .columns ? blocks : nil, commSMs: link.copyBlocks)
    }
    /// Communicator threads and GEMM threads (`ScheduleOptions.engines(for:)`).
    public let engines: EngineSplit
    let options: ScheduleOptions
    let layer1: Layer1
    let link: LinkClock
    let device: Device
    let window: CometWindow
    let buffers: ExpertBuffers
    /// Layer0's transfer tiles, rows.
    let tileRows: Int
    /// Layer1's blocks (`Layer1.blocks`).
    let blocks: [Range<Int>]

    /// Chooses tiles and blocks for `link` and allocates the window on `group`. Collective.
    init(
        config: MoEConfig, options: ScheduleOptions, layer1: Layer1, link: LinkClock, device: Device, group: Communicator,
        tensorParallel: Int, forcePutGet: Bool
    ) throws {
        (self.options, self.layer1, self.link, self.device) = (options, layer1, link, device)
        let kind: ScheduleKind = layer1 == .columns ? .comet : .cometRows
        engines = options.engines(for: kind)
        let n = config.modelWidth
        tileRows = options.tileRows(for: link.model, kind: kind)
        blocks = layer1.blocks(options, link: link.model, modelWidth: n)
        buffers = ExpertBuffers(modelWidth: n, hiddenWidth: config.hiddenWidth, activation: config.activation)
        let layout = WindowLayout(capacity: config.tokensPerRank * config.topK, modelWidth: n, ranks: group.size,
                                  tensorParallel: tensorParallel, blocks: blocks.count)
        window = try CometWindow(layout: layout, group: group, stamped: !link.model.isNative || device.clock.isPerRank,
                                 forcePutGet: forcePutGet)
    }

    public func forward(_ x: MatrixView, _ call: LayerCall, into y: MatrixView) throws {
        let plan = call.plan, buffers = self.buffers, held = link.copyBlocks ?? 0
        buffers.reserve(rows: plan.receivedRows)
        let phase = try window.publish(rows: plan.tokens * plan.topK, timeline: call.timeline) { send in
            HomeRows.pack(x, plan, rows: 0..<(plan.tokens * plan.topK), into: send)
        }
        try run(call, phase: phase, PassSteps(
            received: buffers.x,
            rowTile: { experts, expert, rows in plan.grouped(expert, rows, heldSMs: held) { experts.forwardUp(expert, rows: rows, buffers) } },
            rowGradient: nil,
            columnBlock: { experts, expert, rows, columns in
                plan.grouped(expert, rows, columns, of: y.columns, heldSMs: held) { experts.forwardDown(expert, rows: rows, columns: columns, buffers) }
            },
            tail: [],
            results: buffers.y,
            reduce: { returned, columns in
                HomeRows.reduce(returned, plan, weights: call.routing.weights, columns: columns, into: y)
            }))
    }

    public func backward(_ dy: MatrixView, _ call: LayerCall, into dx: MatrixView) throws -> [Float] {
        let plan = call.plan, returned = window.returnRows, buffers = self.buffers, held = link.copyBlocks ?? 0
        var weightGradients: [Float] = []
        // The expert outputs are still in the return rows: no rank pushes before it has pulled what this publishes.
        let phase = try window.publish(rows: plan.tokens * plan.topK, timeline: call.timeline) { send in
            weightGradients = HomeRows.weightGradients(dy, returned, plan)
            HomeRows.packScaled(dy, plan, weights: call.routing.weights, into: send)
        }
        // dW2 accumulates group by group as dy lands (`OrderedGradient`); dW1 fills the tail behind the last block.
        let tail: [@Sendable (Experts) -> Double] = (0..<plan.expertsPerRank).map { expert in
            let rows = plan.expertRows(expert)
            return { $0.accumulateUpGradient(expert, rows: rows, buffers) }
        }
        try run(call, phase: phase, PassSteps(
            received: buffers.dy,
            rowTile: { experts, expert, rows in plan.grouped(expert, rows, heldSMs: held) { experts.backwardDown(expert, rows: rows, buffers) } },
            rowGradient: { experts, expert, rows in
                plan.grouped(expert, rows, heldSMs: held) { experts.accumulateDownGradient(expert, rows: rows, buffers) }
            },
            columnBlock: { experts, expert, rows, columns in
                plan.grouped(expert, rows, columns, of: dx.columns, heldSMs: held) { experts.backwardUp(expert, rows: rows, columns: columns, buffers) }
            },
            tail: tail,
            results: buffers.dx,
            reduce: { returned, columns in HomeRows.reduce(returned, plan, weights: nil, columns: columns, into: dx) }))
        return weightGradients
    }

    /// Frees the window. Collective.
    public func release() throws { try window.free() }

    /// Phase `phase` on the rank's workers: communicator threads first, then GEMM threads.
    private func run(_ call: LayerCall, phase: Int, _ steps: PassSteps) throws {
        let pass = CometPass(call: call, steps: steps, window: window, phase: phase, link: link, tileRows: tileRows, blocks: blocks,
                             commThreads: engines.communicators)
        let layer1 = self.layer1.strategy(for: pass)
        let communicators = engines.communicators
        try device.workers.run(engines.total) { index in
            let thread = index + 1  // timeline track; 0 is the rank's main thread
            if index < communicators {
                try PullRows(pass: pass, layer1: layer1, index: index).run(thread: thread)
            } else {
                try ComputeRows(pass: pass, layer1: layer1).run(thread: thread)
            }
        }
    }
}

/// What one comet pass computes at each step: forward and backward differ only here.
struct PassSteps: Sendable {
    /// Where pulled rows land [R, N].
    let received: MatrixView
    /// Layer0 on landed rows of one expert; returns its FLOPs.
    let rowTile: @Sendable (_ experts: Experts, _ expert: Int, _ rows: Range<Int>) -> Double
    /// A weight gradient that layer0 accumulates over rows of one expert, in fixed
    /// groups (`OrderedGradient`); returns its FLOPs.
    let rowGradient: (@Sendable (_ experts: Experts, _ expert: Int, _ rows: Range<Int>) -> Double)?
    /// Layer1 on rows and columns of one expert; returns its FLOPs.
    let columnBlock: @Sendable (_ experts: Experts, _ expert: Int, _ rows: Range<Int>, _ columns: Range<Int>) -> Double
    /// Work behind layer1 (weight gradients), one task each.
    let tail: [@Sendable (Experts) -> Double]
    /// Layer1's results [R, N], pushed home.
    let results: MatrixView
    /// The top-k reduce of returned rows' `columns` at home.
    let reduce: @Sendable (_ returned: MatrixView, _ columns: Range<Int>) -> Void
}
