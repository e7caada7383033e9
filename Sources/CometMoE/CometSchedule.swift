import CometKernels
import CometMPI

/// Comet's fine-grained schedule (MLSys 2025), on CPU ranks.
///
/// Each rank's symmetric window holds its rows in send order (`sendRows`, read by
/// the experts' ranks), the rows that come back (`returnRows`, written by them),
/// and per column block the time each expert rank's push arrives (`stamps`).
/// A layer call runs `commThreads` communicator threads and `gemmThreads` GEMM
/// threads:
///
/// - layer0 (dispatch + GEMM1): communicator threads *pull* each source's rows
///   with one-sided gets, own rank first, then rank+1, rank+2, ... and raise a
///   per-source flag; GEMM threads compute row tiles of `tileRows` rows in the
///   same order, each as soon as its source's rows have landed.
/// - layer1 (GEMM2 + combine): GEMM threads compute GEMM2 one column block of
///   `blockColumns` columns at a time across all local experts; communicator
///   threads *push* each finished block straight into the home ranks' windows and
///   raise their flags, and top-k-reduce the blocks that arrive home, while the
///   GEMM threads go on with the next block. Only the last block is exposed.
///
/// Backward runs the dual patterns: the backward of combine is a dispatch (pull
/// w * dy, row tiles of dGEMM2 and the activation), the backward of dispatch is a
/// combine (column blocks of dx pushed home and summed); the weight-gradient GEMMs
/// fill the tail.
public final class CometSchedule: MoESchedule {
    public let name = "comet"
    let options: ScheduleOptions
    let window: SymmetricWindow
    let buffers: ExpertBuffers
    let layout: WindowLayout
    let blocks: [Range<Int>]
    /// Layer calls so far; flags count them, so no flag is ever reset.
    private var phase = 0

    /// Allocates the window on `group`. Collective.
    public init(config: MoEConfig, options: ScheduleOptions, group: Communicator, forcePutGet: Bool) throws {
        self.options = options
        blocks = tiles(0..<config.modelWidth, size: options.blockColumns)
        buffers = ExpertBuffers(modelWidth: config.modelWidth, hiddenWidth: config.hiddenWidth, activation: config.activation)
        layout = WindowLayout(capacity: config.tokensPerRank * config.topK, modelWidth: config.modelWidth,
                              ranks: group.size, blocks: blocks.count)
        window = try SymmetricWindow(communicator: group, byteCount: layout.byteCount, flagCount: layout.flagCount,
                                     forcePutGet: forcePutGet)
    }

    private var sendRows: MatrixView { layout.sendRows(window.localData) }
    private var returnRows: MatrixView { layout.returnRows(window.localData) }

    public func forward(_ x: MatrixView, _ call: LayerCall, into y: MatrixView) throws {
        let plan = call.plan
        buffers.reserve(rows: plan.receivedRows)
        try publish(call) { send in HomeRows.pack(x, plan, rows: 0..<(plan.tokens * plan.topK), into: send) }
        let buffers = self.buffers
        try run(
            call, pullInto: buffers.x,
            rowTile: { experts, expert, rows in experts.forwardUp(expert, rows: rows, buffers) },
            columnBlock: { experts, expert, rows, columns in experts.forwardDown(expert, rows: rows, columns: columns, buffers) },
            tail: [],
            pushFrom: buffers.y,
            reduce: { returned, columns in
                HomeRows.reduce(returned, plan, weights: call.routing.weights, columns: columns, into: y)
            })
    }

    public func backward(_ dy: MatrixView, _ call: LayerCall, into dx: MatrixView) throws -> [Float] {
        let plan = call.plan, returned = returnRows
        var weightGradients: [Float] = []
        // The expert outputs are still in returnRows: no rank pushes before it has pulled what this publishes.
        try publish(call) { send in
            weightGradients = HomeRows.weightGradients(dy, returned, plan)
            HomeRows.packScaled(dy, plan, weights: call.routing.weights, into: send)
        }
        let buffers = self.buffers
        let tail: [@Sendable (Experts) -> Void] = (0..<plan.expertsPerRank).flatMap { expert -> [@Sendable (Experts) -> Void] in
            let rows = plan.expertRows(expert)
            return [{ $0.accumulateDownGradient(expert, rows: rows, buffers) }, { $0.accumulateUpGradient(expert, rows: rows, buffers) }]
        }
        try run(
            call, pullInto: buffers.dy,
            rowTile: { experts, expert, rows in experts.backwardDown(expert, rows: rows, buffers) },
            columnBlock: { experts, expert, rows, columns in experts.backwardUp(expert, rows: rows, columns: columns, buffers) },
            tail: tail,
            pushFrom: buffers.dx,
            reduce: { returned, columns in HomeRows.reduce(returned, plan, weights: nil, columns: columns, into: dx) })
        return weightGradients
    }

    /// Starts a phase: waits until every rank has pulled what this rank published
    /// last time, fills `sendRows` with `fill`, and tells every rank it is ready.
    private func publish(_ call: LayerCall, _ fill: (MatrixView) -> Void) throws {
        precondition(call.plan.tokens * call.plan.topK <= layout.capacity, "more tokens than the layer was built for")
        let ranks = window.communicator.size, me = window.communicator.rank
        try window.waitForFlag(layout.pulledFlag, toReach: UInt64(phase * ranks), "every rank's pull of phase \(phase) rows from here")
        phase += 1
        call.timeline.record(.local, thread: 0, "pack") { fill(sendRows) }
        for rank in 0..<ranks { try window.setFlag(layout.readyFlag(source: me), to: UInt64(phase), onRank: rank) }
    }

    /// One phase on `commThreads + gemmThreads` threads (see the type's summary).
    private func run(
        _ call: LayerCall, pullInto received: MatrixView,
        rowTile: @escaping @Sendable (Experts, Int, Range<Int>) -> Void,
        columnBlock: @escaping @Sendable (Experts, Int, Range<Int>, Range<Int>) -> Void,
        tail: [@Sendable (Experts) -> Void],
        pushFrom results: MatrixView,
        reduce: @escaping @Sendable (MatrixView, Range<Int>) -> Void
    ) throws {
        let plan = call.plan, timeline = call.timeline, window = self.window, phase = self.phase
        let (ranks, me, timeout) = (plan.ranks, plan.rank, call.group.waitTimeout)
        let (commThreads, gemmThreads, blocks, emulated) = (options.commThreads, options.gemmThreads, self.blocks, !call.link.model.isNative)
        let order = (0..<ranks).map { (me + $0) % ranks }  // own rank first, then rank+1, ...
        let arrivals = ArrivalTimes(count: ranks)
        let landed = (0..<ranks).map { _ in ThreadFlag() }
        let blockDone = blocks.map { _ in ThreadFlag() }
        let rowTasks = order.flatMap { source in
            (0..<plan.expertsPerRank).flatMap { expert in
                tiles(plan.receiveSegment(source: source, expert: expert), size: options.tileRows).map { (source, expert, $0) }
            }
        }
        let rowCounter = TaskCounter(count: rowTasks.count), rowsDone = ThreadFlag()
        let blockCounter = TaskCounter(count: blocks.count), tailCounter = TaskCounter(count: tail.count)
        let returned = returnRows, layout = self.layout

        try runThreads(commThreads + gemmThreads) { thread in
            if thread < commThreads {
                // layer0: pull this thread's share of the sources, in order.
                for (index, source) in order.enumerated() where index % commThreads == thread {
                    try window.waitForFlag(layout.readyFlag(source: source), toReach: UInt64(phase), "rank \(source)'s rows of phase \(phase)")
                    let bytes = plan.receiveCount(source: source) * layout.rowBytes
                    try timeline.record(.comm, thread: thread, "pull \(bytes) B from rank \(source)") {
                        for expert in 0..<plan.expertsPerRank {
                            let segment = plan.receiveSegment(source: source, expert: expert)
                            guard !segment.isEmpty else { continue }
                            try window.get(into: received.base + segment.lowerBound * received.rowStride,
                                           byteCount: segment.count * layout.rowBytes, fromRank: source,
                                           offset: layout.sendOffset(row: plan.sourceOffset(source: source, expert: expert)))
                        }
                    }
                    try window.addToFlag(layout.pulledFlag, 1, onRank: source)
                    arrivals[source] = call.link.book(bytes: bytes, peer: source, isSelf: source == me)
                    landed[source].raise(to: 1)
                }
                // layer1: push this thread's blocks as they finish; reduce those that have come home.
                let mine = blocks.indices.filter { $0 % commThreads == thread }
                var pushed = 0, reduced = 0
                var backoff = Backoff(timeout: timeout)
                while reduced < mine.count {
                    if pushed < mine.count, blockDone[mine[pushed]].current > 0 {
                        let block = mine[pushed], columns = blocks[block]
                        try timeline.record(.comm, thread: thread, "push block \(block)") {
                            for home in order.dropFirst() + [me] {
                                for expert in 0..<plan.expertsPerRank {
                                    let segment = plan.receiveSegment(source: home, expert: expert)
                                    try window.putRows(
                                        results.base + segment.lowerBound * results.rowStride + columns.lowerBound,
                                        rows: segment.count, rowBytes: columns.count * 4, sourceStride: results.rowStride * 4,
                                        toRank: home,
                                        offset: layout.returnOffset(row: plan.sourceOffset(source: home, expert: expert), column: columns.lowerBound),
                                        targetStride: layout.rowBytes)
                                }
                                var arrival = call.link.book(bytes: plan.receiveCount(source: home) * columns.count * 4, peer: home, isSelf: home == me)
                                try window.put(&arrival, byteCount: 8, toRank: home, offset: layout.stampOffset(block: block, source: me))
                                try window.addToFlag(layout.arrivedFlag(block: block), 1, onRank: home)
                            }
                        }
                        pushed += 1
                        backoff = Backoff(timeout: timeout)
                    } else if try window.flag(layout.arrivedFlag(block: mine[reduced])) >= UInt64(phase * ranks) {
                        let block = mine[reduced]
                        if emulated {
                            let stamps = (0..<ranks).map {
                                window.localData.load(fromByteOffset: layout.stampOffset(block: block, source: $0), as: Double.self)
                            }
                            sleep(until: stamps.max() ?? 0)
                        }
                        timeline.record(.local, thread: thread, "top-k reduce block \(block)") { reduce(returned, blocks[block]) }
                        reduced += 1
                        backoff = Backoff(timeout: timeout)
                    } else {
                        backoff.pause("waited \(timeout) s in phase \(phase) for block \(mine[min(pushed, mine.count - 1)]) "
                            + "to be computed or block \(mine[reduced]) to come home from every rank")
                    }
                }
            } else {
                let worker = thread
                // layer0: row tiles, in arrival order.
                while let task = rowCounter.take() {
                    let (source, expert, rows) = rowTasks[task]
                    landed[source].wait(toReach: 1, timeout: timeout, "rows from rank \(source) to land (phase \(phase))")
                    if emulated { sleep(until: arrivals[source]) }
                    timeline.record(.gemm, thread: worker, "row tile from rank \(source), expert \(expert), \(rows.count) rows") {
                        rowTile(call.experts, expert, rows)
                    }
                    rowsDone.add(1)
                }
                rowsDone.wait(toReach: rowTasks.count, timeout: timeout, "the other GEMM threads' row tiles")
                // layer1: column blocks across all local experts.
                while let block = blockCounter.take() {
                    timeline.record(.gemm, thread: worker, "column block \(block)") {
                        for expert in 0..<plan.expertsPerRank {
                            columnBlock(call.experts, expert, plan.expertRows(expert), blocks[block])
                        }
                    }
                    blockDone[block].raise(to: 1)
                }
                while let task = tailCounter.take() {
                    timeline.record(.gemm, thread: worker, "weight gradient") { tail[task](call.experts) }
                }
            }
        }
    }
}

/// Where things are in a rank's window: flags first (`SymmetricWindow`), then
/// data: sendRows [capacity, N], returnRows [capacity, N], stamps [blocks, W].
struct WindowLayout: Sendable {
    /// Rows each region holds: tokens per rank x top-k.
    let capacity: Int
    let modelWidth: Int
    let ranks: Int
    let blocks: Int

    var rowBytes: Int { modelWidth * MemoryLayout<Float>.stride }
    var byteCount: Int { 2 * capacity * rowBytes + blocks * ranks * MemoryLayout<Double>.stride }

    /// ready[source] (0..<W): the phase whose rows `source` has published.
    func readyFlag(source: Int) -> Int { source }
    /// pulled (W): ranks that have pulled this rank's rows, over all phases.
    var pulledFlag: Int { ranks }
    /// arrived[block] (W + 1 + block): ranks that have pushed `block` here, over all phases.
    func arrivedFlag(block: Int) -> Int { ranks + 1 + block }
    var flagCount: Int { ranks + 1 + blocks }

    func sendOffset(row: Int) -> Int { row * rowBytes }
    func returnOffset(row: Int, column: Int) -> Int { (capacity + row) * rowBytes + column * MemoryLayout<Float>.stride }
    /// When `source`'s push of `block` arrives here, on the link model's clock.
    func stampOffset(block: Int, source: Int) -> Int {
        2 * capacity * rowBytes + (block * ranks + source) * MemoryLayout<Double>.stride
    }

    func sendRows(_ data: UnsafeMutableRawPointer) -> MatrixView {
        MatrixView(base: data.assumingMemoryBound(to: Float.self), rows: capacity, columns: modelWidth)
    }
    func returnRows(_ data: UnsafeMutableRawPointer) -> MatrixView {
        MatrixView(base: (data + returnOffset(row: 0, column: 0)).assumingMemoryBound(to: Float.self), rows: capacity, columns: modelWidth)
    }
}

/// When each source's rows arrive, by the link model; written by the
/// communicator thread before it raises the source's flag.
final class ArrivalTimes: @unchecked Sendable {
    private let times: UnsafeMutableBufferPointer<Double>
    init(count: Int) { times = .allocate(capacity: count); times.initialize(repeating: 0) }
    deinit { times.deallocate() }
    subscript(source: Int) -> Double {
        get { times[source] }
        set { times[source] = newValue }
    }
}
