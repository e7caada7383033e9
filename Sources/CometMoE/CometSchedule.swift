import CometKernels
import CometMPI
import Synchronization

/// Comet's fine-grained schedule (MLSys 2025), on CPU ranks.
///
/// Each rank's symmetric window holds its rows in send order (`sendRows`, read by
/// the experts' ranks), the rows that come back (`returnRows`, written by them:
/// one region per TP index, whose partial results the top-k reduce sums too),
/// and per column block the time each expert rank's push arrives (`stamps`).
/// A layer call runs `commThreads` communicator threads and `gemmThreads` GEMM
/// threads:
///
/// - layer0 (dispatch + GEMM1): communicator threads *pull* rows from every
///   source with one-sided gets, `tileRows` rows at a time, own rank first, then
///   one tile from each of rank+1, rank+2, ... in turn, and post each tile on a
///   `LandingBoard`; GEMM threads compute rows as soon as they have landed, own
///   rank's first, then rank+1, rank+2, ... (`ScheduleOptions` says how tiles and
///   blocks are sized.)
/// - layer1 (GEMM2 + combine): GEMM threads compute GEMM2 one column block of
///   `blockColumns` columns at a time across all local experts; communicator
///   threads *push* each finished block straight into the home ranks' windows and
///   raise their flags, and top-k-reduce the blocks that arrive home, while the
///   GEMM threads go on with the next block. Only the last block is exposed.
///   With `Layer1.rows` (the `comet-rows` schedule) layer1 runs per landed row
///   group instead, and its rows are pushed home as soon as they are computed.
///
/// Backward runs the dual patterns: the backward of combine is a dispatch (pull
/// w * dy; row tiles of dGEMM2, the activation and dW2 as rows land), the backward
/// of dispatch is a combine (column blocks of dx pushed home and summed); dW1
/// fills the tail behind the last block.
public final class CometSchedule: MoESchedule {
    /// How layer1 (GEMM2 and the combine) is cut.
    public enum Layer1: Sendable {
        /// As in the paper: once all of layer0 is done, column blocks over every row,
        /// each pushed home and top-k-reduced there while the next block computes.
        case columns
        /// Right after a landed row group's GEMM1, its GEMM2 over every column, pushed
        /// home at once; the home reduces when every rank's rows are in. The combine
        /// then queues right behind the dispatch on each link, and layer1's GEMMs
        /// spread over layer0's, at the price of a reduce that is not overlapped.
        case rows
    }

    public var name: String { layer1 == .columns ? "comet" : "comet-rows" }
    let options: ScheduleOptions
    let layer1: Layer1
    let window: SymmetricWindow
    let buffers: ExpertBuffers
    let layout: WindowLayout
    let modelWidth: Int
    /// Layer calls so far; flags count them, so no flag is ever reset.
    private var phase = 0
    /// Layer calls that used each column block; its arrived flag counts W per use.
    private var blockUses: [Int]

    /// Allocates the window on `group`. Collective.
    public init(
        config: MoEConfig, options: ScheduleOptions, layer1: Layer1 = .columns, group: Communicator, tensorParallel: Int = 1,
        forcePutGet: Bool
    ) throws {
        self.options = options
        self.layer1 = layer1
        modelWidth = config.modelWidth
        buffers = ExpertBuffers(modelWidth: config.modelWidth, hiddenWidth: config.hiddenWidth, activation: config.activation)
        layout = WindowLayout(capacity: config.tokensPerRank * config.topK, modelWidth: config.modelWidth,
                              ranks: group.size, tensorParallel: tensorParallel,
                              blocks: options.maxBlocks(modelWidth: config.modelWidth))
        blockUses = [Int](repeating: 0, count: layout.blocks)
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
        // dW2 accumulates tile by tile as dy lands; dW1 fills the tail behind the last block.
        let tail: [@Sendable (Experts) -> Double] = (0..<plan.expertsPerRank).map { expert in
            let rows = plan.expertRows(expert)
            return { $0.accumulateUpGradient(expert, rows: rows, buffers) }
        }
        try run(
            call, pullInto: buffers.dy,
            rowTile: { experts, expert, rows in
                experts.backwardDown(expert, rows: rows, buffers) + experts.accumulateDownGradient(expert, rows: rows, buffers)
            },
            columnBlock: { experts, expert, rows, columns in experts.backwardUp(expert, rows: rows, columns: columns, buffers) },
            tail: tail,
            pushFrom: buffers.dx,
            reduce: { returned, columns in HomeRows.reduce(returned, plan, weights: nil, columns: columns, into: dx) })
        return weightGradients
    }

    /// Frees the window. Collective.
    public func release() throws { try window.free() }

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
        rowTile: @escaping @Sendable (Experts, Int, Range<Int>) -> Double,
        columnBlock: @escaping @Sendable (Experts, Int, Range<Int>, Range<Int>) -> Double,
        tail: [@Sendable (Experts) -> Double],
        pushFrom results: MatrixView,
        reduce: @escaping @Sendable (MatrixView, Range<Int>) -> Void
    ) throws {
        let plan = call.plan, timeline = call.timeline, window = self.window, phase = self.phase
        let (ranks, me, timeout) = (plan.ranks, plan.rank, call.group.waitTimeout)
        let (commThreads, gemmThreads, emulated) = (options.commThreads, options.gemmThreads, !call.link.model.isNative)
        let byRows = layer1 == .rows
        let tileRows = options.tileRows(for: call.link.model)
        // By rows, layer1 is one "block" of every column: its flags and stamps say when all rows are home.
        let blocks = byRows ? [0..<modelWidth] : options.columnBlocks(for: call.link.model, modelWidth: modelWidth)
        for block in blocks.indices { blockUses[block] += 1 }
        let arrivals = blocks.indices.map { UInt64(blockUses[$0] * ranks) }
        let order = (0..<ranks).map { (me + $0) % ranks }  // own rank first, then rank+1, ...
        let rowTasks = rowTileOrder(plan, order: order, tileRows: tileRows)
        let board = LandingBoard(rowTasks, emulated: emulated), maxGEMMRows = 8 * tileRows
        let tilesOf = Dictionary(grouping: rowTasks, by: \.source)
        let lastTile = Dictionary(rowTasks.indices.map { (rowTasks[$0].source, $0) }, uniquingKeysWith: max)
        let computed = TaskMarks(count: rowTasks.count)
        let rowsDone = ThreadFlag(), layer0Done = ThreadFlag()
        let blockCounter = TaskCounter(count: blocks.count), tailCounter = TaskCounter(count: tail.count)
        let returned = returnRows, layout = self.layout, allColumns = 0..<modelWidth

        /// Pushes `columns` of the results of `tiles` (all from `home`) home in one transfer;
        /// returns when it arrives there.
        @Sendable func push(_ tiles: [RowTile], to home: Int, columns: Range<Int>, thread: Int, _ label: String) throws -> Double {
            let start = monotonicSeconds()
            for tile in tiles {
                try window.putRows(
                    results.base + tile.rows.lowerBound * results.rowStride + columns.lowerBound,
                    rows: tile.rows.count, rowBytes: columns.count * 4, sourceStride: results.rowStride * 4, toRank: home,
                    offset: layout.returnOffset(region: plan.returnSlot(from: me), row: tile.sourceRow, column: columns.lowerBound),
                    targetStride: layout.rowBytes)
            }
            let bytes = tiles.reduce(0) { $0 + $1.rows.count } * columns.count * 4
            let arrival = call.link.book(bytes: bytes, peer: home, isSelf: home == me)
            timeline.recordTransfer(thread: thread, start: start, end: max(arrival, monotonicSeconds()), label,
                                    ["half": "layer1", "peer": "\(home)", "columns": "\(columns)", "bytes": "\(bytes)"])
            return arrival
        }
        /// Tells `home` that this rank's push of `block` is complete and arrives at `arrival`.
        @Sendable func announce(block: Int, to home: Int, arrival: Double) throws {
            var arrival = arrival
            try window.put(&arrival, byteCount: 8, toRank: home, offset: layout.stampOffset(block: block, source: me))
            try window.addToFlag(layout.arrivedFlag(block: block), 1, onRank: home)
        }
        /// When every rank's push of `block` is here, on the link's clock; infinity while some are missing.
        @Sendable func homeTime(block: Int) throws -> Double {
            guard try window.flag(layout.arrivedFlag(block: block)) >= arrivals[block] else { return .infinity }
            guard emulated else { return 0 }
            return (0..<ranks).map {
                window.localData.load(fromByteOffset: layout.stampOffset(block: block, source: $0), as: Double.self)
            }.max() ?? 0
        }
        @Sendable func reduceBlock(_ block: Int, thread: Int) {
            timeline.record(.local, thread: thread, "top-k reduce block \(block)",
                            ["half": "layer1", "block": "\(block)", "columns": "\(blocks[block])"]) {
                reduce(returned, blocks[block])
            }
        }

        try runThreads(commThreads + gemmThreads) { index in
            let thread = index + 1  // timeline track; 0 is the rank's main thread
            if index < commThreads {
                // layer0: pull this thread's sources' tiles in pull order, skipping sources that
                // have not published yet (ranks drift apart between layers), so that a late rank
                // holds up only its own rows.
                let sources = Set(order.indices.filter { $0 % commThreads == index }.map { order[$0] })
                var pending = rowTasks.indices.filter { sources.contains(rowTasks[$0].source) }
                // Sources with nothing to pull: still wait for their rows of this phase, since a rank
                // that has published this phase has finished the last one, so no push below reaches it early.
                var silent = sources.filter { lastTile[$0] == nil }
                var published = Set<Int>()
                var backoff = Backoff(timeout: timeout)
                func hasPublished(_ source: Int) throws -> Bool {
                    if published.contains(source) { return true }
                    guard try window.flag(layout.readyFlag(source: source)) >= UInt64(phase) else { return false }
                    published.insert(source)
                    return true
                }
                // By rows: the tiles to push home as their rows are computed, and per home the
                // pushes left and the latest arrival.
                var unpushed = byRows ? pending : []
                var pushesLeft = Dictionary(grouping: unpushed, by: { rowTasks[$0].source }).mapValues(\.count)
                var latest = [Int: Double]()
                var reducePending = byRows && index == 0
                /// Pulls every tile whose source has published; true if it did anything.
                func pullPublished() throws -> Bool {
                    var progress = false
                    for source in silent where try hasPublished(source) {
                        try window.addToFlag(layout.pulledFlag, 1, onRank: source)
                        if byRows { try announce(block: 0, to: source, arrival: 0) }
                        silent.remove(source)
                        progress = true
                    }
                    while let position = try pending.firstIndex(where: { try hasPublished(rowTasks[$0].source) }) {
                        let task = pending.remove(at: position), tile = rowTasks[task]
                        let start = monotonicSeconds()
                        try window.get(into: received.base + tile.rows.lowerBound * received.rowStride,
                                       byteCount: tile.rows.count * layout.rowBytes, fromRank: tile.source,
                                       offset: layout.sendOffset(row: tile.sourceRow))
                        if lastTile[tile.source] == task { try window.addToFlag(layout.pulledFlag, 1, onRank: tile.source) }
                        let arrival = call.link.book(bytes: tile.rows.count * layout.rowBytes, peer: tile.source, isSelf: tile.source == me)
                        timeline.recordTransfer(thread: thread, start: start, end: max(arrival, monotonicSeconds()),
                                                "pull \(tile.rows.count) rows from rank \(tile.source)",
                                                ["half": "layer0", "peer": "\(tile.source)", "expert": "\(tile.expert)",
                                                 "rows": "\(tile.rows)", "bytes": "\(tile.rows.count * layout.rowBytes)"])
                        board.land(task: task, arrival: arrival)
                        progress = true
                    }
                    return progress
                }
                /// By rows: pushes home every computed tile; true if it did anything.
                func pushComputed() throws -> Bool {
                    // Those marked now, in pull order; tiles marked meanwhile wait for the next pass.
                    let marked = computed.marked(among: unpushed)
                    let ready = unpushed.filter { marked.contains($0) }
                    unpushed.removeAll { marked.contains($0) }
                    for task in ready {
                        let tile = rowTasks[task], home = tile.source
                        let arrival = try push([tile], to: home, columns: allColumns, thread: thread,
                                               "push \(tile.rows.count) rows to rank \(home)")
                        latest[home] = max(latest[home] ?? 0, arrival)
                        pushesLeft[home]! -= 1
                        if pushesLeft[home] == 0 { try announce(block: 0, to: home, arrival: latest[home]!) }
                    }
                    return !ready.isEmpty
                }

                while !pending.isEmpty || !silent.isEmpty || !unpushed.isEmpty || reducePending {
                    let seen = window.localDoorbell?.value ?? 0
                    var progress = try pullPublished()
                    if byRows { progress = try pushComputed() || progress }
                    var wakeTime = Double.infinity
                    if reducePending, pending.isEmpty, silent.isEmpty, unpushed.isEmpty {
                        let homeAt = try homeTime(block: 0)
                        if homeAt <= monotonicSeconds() {
                            reduceBlock(0, thread: thread)
                            (reducePending, progress) = (false, true)
                        } else {
                            wakeTime = homeAt
                        }
                    }
                    if progress {
                        backoff = Backoff(timeout: timeout)
                        continue
                    }
                    let waitStart = monotonicSeconds()
                    let late = Set(pending.map { rowTasks[$0].source }).union(silent).subtracting(published).sorted()
                    let what = !late.isEmpty ? "ranks \(late) to publish" : !unpushed.isEmpty ? "rows to compute" : "rows to come home"
                    backoff.sleep(on: window.localDoorbell, seen: seen, wakeTime: wakeTime,
                                  "waited \(timeout) s in phase \(phase) for \(what)")
                    timeline.recordWait(thread: thread, since: waitStart, "wait for \(what)")
                }
                guard !byRows else { return }
                // Every source has published this phase before any block is pushed.
                layer0Done.add(1)
                layer0Done.wait(toReach: commThreads, timeout: timeout, "the other communicator threads' pulls (phase \(phase))")
                // layer1: push this thread's blocks as they finish; reduce those that have come home.
                let mine = blocks.indices.filter { $0 % commThreads == index }
                var pushed = 0, reducedBlocks = 0
                backoff = Backoff(timeout: timeout)
                while reducedBlocks < mine.count {
                    let seen = window.localDoorbell?.value ?? 0
                    if pushed < mine.count, try window.flag(layout.computedFlag(block: mine[pushed])) >= UInt64(phase) {
                        let block = mine[pushed], columns = blocks[block]
                        for home in order.dropFirst() + [me] {
                            let arrival = try push(tilesOf[home] ?? [], to: home, columns: columns, thread: thread,
                                                   "push block \(block) to rank \(home)")
                            try announce(block: block, to: home, arrival: arrival)
                        }
                        pushed += 1
                        backoff = Backoff(timeout: timeout)
                        continue
                    }
                    // When every rank's push of the next block to reduce is here, on the link's clock.
                    let homeAt = try homeTime(block: mine[reducedBlocks])
                    if homeAt <= monotonicSeconds() {
                        reduceBlock(mine[reducedBlocks], thread: thread)
                        reducedBlocks += 1
                        backoff = Backoff(timeout: timeout)
                    } else {
                        // Sleep until a block is computed or pushed here, or the next one's pushes land.
                        let waitStart = monotonicSeconds()
                        defer { timeline.recordWait(thread: thread, since: waitStart, "wait for a block to finish or come home") }
                        backoff.sleep(on: window.localDoorbell, seen: seen, wakeTime: homeAt,
                                      "waited \(timeout) s in phase \(phase) for block \(mine[min(pushed, mine.count - 1)]) "
                                        + "to be computed or block \(mine[reducedBlocks]) to come home from every rank")
                    }
                }
            } else {
                let worker = thread
                // layer0: whatever rows have arrived, own rank's first, up to 8 tiles at once; by rows,
                // layer1 of those rows too, which the communicator threads then push home.
                while let work = board.take(maxRows: maxGEMMRows, timeout: timeout, phase: phase, timeline: timeline, thread: worker) {
                    let sources = work.sources.map(String.init).joined(separator: ",")
                    timeline.recordGEMM(thread: worker, "rows \(work.rows) from ranks \(sources), expert \(work.expert)",
                                        ["half": "layer0", "peers": sources, "expert": "\(work.expert)", "rows": "\(work.rows)"]) {
                        rowTile(call.experts, work.expert, work.rows)
                    }
                    if byRows {
                        timeline.recordGEMM(thread: worker, "rows \(work.rows), expert \(work.expert)",
                                            ["half": "layer1", "expert": "\(work.expert)", "rows": "\(work.rows)"]) {
                            columnBlock(call.experts, work.expert, work.rows, allColumns)
                        }
                        computed.mark(work.tasks)
                        window.localDoorbell?.ring()
                    }
                    rowsDone.add(work.rows.count)
                }
                // Every row's layer0 (and by rows, layer1) is done before the column blocks
                // or the tail read all of an expert's rows.
                let waitStart = monotonicSeconds()
                rowsDone.wait(toReach: plan.receivedRows, timeout: timeout, "the other GEMM threads' rows")
                timeline.recordWait(thread: worker, since: waitStart, "wait for the other GEMM threads' rows")
                if !byRows {
                    // layer1: column blocks across all local experts.
                    while let block = blockCounter.take() {
                        timeline.recordGEMM(thread: worker, "column block \(block)",
                                            ["half": "layer1", "block": "\(block)", "columns": "\(blocks[block])"]) {
                            (0..<plan.expertsPerRank).reduce(0) { $0 + columnBlock(call.experts, $1, plan.expertRows($1), blocks[block]) }
                        }
                        try window.setFlag(layout.computedFlag(block: block), to: UInt64(phase), onRank: me)
                    }
                }
                while let task = tailCounter.take() {
                    timeline.recordGEMM(thread: worker, "weight gradient", ["half": "tail"]) { tail[task](call.experts) }
                }
            }
        }
    }
}

/// Which layer0 tiles' rows the GEMM threads have finished (by-rows layer1).
final class TaskMarks: Sendable {
    private let marks: Mutex<[Bool]>
    init(count: Int) { marks = Mutex([Bool](repeating: false, count: count)) }
    func mark(_ tasks: [Int]) { marks.withLock { for task in tasks { $0[task] = true } } }
    /// Those of `tasks` that are marked.
    func marked(among tasks: [Int]) -> Set<Int> { marks.withLock { marks in Set(tasks.filter { marks[$0] }) } }
}

/// A layer0 GEMM tile: rows of one source for one expert.
struct RowTile: Sendable {
    let source: Int
    let expert: Int
    /// Rows in the receive buffer, within the expert's rows.
    let rows: Range<Int>
    /// Where they start in the source's send order.
    let sourceRow: Int
}

/// Layer0's tiles in the order they are pulled: this rank's own first (they need
/// no link), then the other sources round-robin, one tile of each in turn, rank+1
/// first. Every link carries its tiles one after another while all links run at
/// once, so the k-th tiles of all sources land together. A remote source's tiles
/// start at a quarter of `tileRows` and double up to it, so that the first remote
/// rows land soon after the own rank's GEMMs begin, and shrink again at its end,
/// so that little is left to compute once the last rows land.
///
/// Comet's receive buffers keep each expert's rows in this order (not source by
/// source as `RoutingPlan.receiveSegment` has them), so tiles that land together
/// are adjacent and one GEMM takes them all.
func rowTileOrder(_ plan: RoutingPlan, order: [Int], tileRows: Int) -> [RowTile] {
    // Per source, its pieces in send order: (expert, rows in the source's send order).
    let perSource = order.map { source in
        let segments = (0..<plan.expertsPerRank).map { expert in
            (expert: expert, start: plan.sourceOffset(source: source, expert: expert),
             count: plan.receiveSegment(source: source, expert: expert).count)
        }
        let total = segments.reduce(0) { $0 + $1.count }
        let lengths = source == order[0] ? tiles(0..<total, size: tileRows).map(\.count)
                                         : rampedTiles(0..<total, first: tileRows / 4, size: tileRows).map(\.count)
        // Cut the source's rows into those lengths, never across an expert's segment.
        var pieces: [(source: Int, expert: Int, sourceRows: Range<Int>)] = []
        var segment = 0, used = 0
        for length in lengths {
            var left = length
            while left > 0 {
                while segments[segment].count == used { (segment, used) = (segment + 1, 0) }
                let take = min(left, segments[segment].count - used)
                let start = segments[segment].start + used
                pieces.append((source, segments[segment].expert, start..<start + take))
                (used, left) = (used + take, left - take)
            }
        }
        return pieces
    }
    let remote = perSource.dropFirst()
    let rounds = remote.map(\.count).max() ?? 0
    let pulled = perSource[0] + (0..<rounds).flatMap { round in remote.compactMap { round < $0.count ? $0[round] : nil } }
    var next = (0..<plan.expertsPerRank).map { plan.expertRows($0).lowerBound }
    return pulled.map { piece in
        let rows = next[piece.expert]..<next[piece.expert] + piece.sourceRows.count
        next[piece.expert] = rows.upperBound
        return RowTile(source: piece.source, expert: piece.expert, rows: rows, sourceRow: piece.sourceRows.lowerBound)
    }
}

/// Where things are in a rank's window: flags first (`SymmetricWindow`), then
/// data: sendRows [capacity, N], returnRows [TP x capacity, N], stamps [blocks, W].
struct WindowLayout: Sendable {
    /// Rows each region holds: tokens per rank x top-k.
    let capacity: Int
    let modelWidth: Int
    let ranks: Int
    let tensorParallel: Int
    let blocks: Int

    var rowBytes: Int { modelWidth * MemoryLayout<Float>.stride }
    private var dataRows: Int { (1 + tensorParallel) * capacity }
    var byteCount: Int { dataRows * rowBytes + blocks * ranks * MemoryLayout<Double>.stride }

    /// ready[source] (0..<W): the phase whose rows `source` has published.
    func readyFlag(source: Int) -> Int { source }
    /// pulled (W): ranks that have pulled this rank's rows, over all phases.
    var pulledFlag: Int { ranks }
    /// arrived[block] (W + 1 + block): ranks that have pushed `block` here, over all phases.
    func arrivedFlag(block: Int) -> Int { ranks + 1 + block }
    /// computed[block] (W + 1 + blocks + block): the phase whose `block` this rank's GEMM
    /// threads have finished. A local flag, in the window so that raising it rings
    /// the doorbell the communicator threads sleep on.
    func computedFlag(block: Int) -> Int { ranks + 1 + blocks + block }
    var flagCount: Int { ranks + 1 + 2 * blocks }

    func sendOffset(row: Int) -> Int { row * rowBytes }
    /// Row `row` of TP index `region`'s partial results, from column `column`.
    func returnOffset(region: Int, row: Int, column: Int) -> Int {
        ((1 + region) * capacity + row) * rowBytes + column * MemoryLayout<Float>.stride
    }
    /// When `source`'s push of `block` arrives here, on the link model's clock.
    func stampOffset(block: Int, source: Int) -> Int {
        dataRows * rowBytes + (block * ranks + source) * MemoryLayout<Double>.stride
    }

    func sendRows(_ data: UnsafeMutableRawPointer) -> MatrixView {
        MatrixView(base: data.assumingMemoryBound(to: Float.self), rows: capacity, columns: modelWidth)
    }
    func returnRows(_ data: UnsafeMutableRawPointer) -> MatrixView {
        MatrixView(base: (data + returnOffset(region: 0, row: 0, column: 0)).assumingMemoryBound(to: Float.self),
                   rows: tensorParallel * capacity, columns: modelWidth)
    }
}
