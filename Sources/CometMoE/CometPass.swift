import CometCore
import CometKernels
import CometMPI

/// One comet layer call (a phase of the window), shared by its communicator and
/// GEMM threads: layer0's tiles in pull order, the landing board they land on, and
/// the steps every role takes (pull a tile, push results home, reduce a block).
final class CometPass: Sendable {
    let call: LayerCall
    let steps: PassSteps
    let window: CometWindow
    /// The window's phase this pass is (`CometWindow.publish`).
    let phase: Int
    let link: LinkClock
    /// Layer1's blocks: column blocks, or one block of every column by rows.
    let blocks: [Range<Int>]
    /// Layer0's tiles in pull order (`rowTileOrder`).
    let tasks: [RowTile]
    /// Sources in pull order: this rank, then rank+1, rank+2, ...
    let order: [Int]
    /// Each source's last task; sources with no rows here have none.
    let lastTask: [Int: Int]
    let board: LandingBoard
    /// Rows whose layer0 GEMMs are done.
    let rowsDone = ThreadFlag()
    /// Sums layer0's weight gradient in fixed groups, if the pass has one.
    let gradient: OrderedGradient?
    /// Hands out the tail's tasks.
    let tail: TaskCounter
    /// Rows one GEMM may take (`ScheduleOptions.tilesPerGEMM` tiles).
    let maxGEMMRows: Int
    let commThreads: Int

    init(
        call: LayerCall, steps: PassSteps, window: CometWindow, phase: Int, link: LinkClock, tileRows: Int, blocks: [Range<Int>],
        commThreads: Int
    ) {
        (self.call, self.steps, self.window, self.phase, self.link, self.blocks) = (call, steps, window, phase, link, blocks)
        let plan = call.plan
        let order = (0..<plan.ranks).map { (plan.rank + $0) % plan.ranks }
        let tasks = rowTileOrder(plan, order: order, tileRows: tileRows)
        (self.order, self.tasks) = (order, tasks)
        lastTask = Dictionary(tasks.indices.map { (tasks[$0].source, $0) }, uniquingKeysWith: max)
        board = LandingBoard(tasks, emulated: !link.model.isNative, clock: link.clock, timeline: call.timeline,
                             timeout: call.group.waitTimeout, phase: phase)
        tail = TaskCounter(count: steps.tail.count)
        maxGEMMRows = ScheduleOptions.tilesPerGEMM * tileRows
        let groupRows = maxGEMMRows
        gradient = steps.rowGradient.map { _ in
            OrderedGradient(expertRows: (0..<plan.expertsPerRank).map(plan.expertRows), groupRows: groupRows)
        }
        self.commThreads = commThreads
    }

    var plan: RoutingPlan { call.plan }
    var timeline: Timeline { call.timeline }
    var clock: any Clock { link.clock }
    var timeout: Double { call.group.waitTimeout }

    /// Communicator thread `index`'s sources: every `commThreads`-th rank in pull order.
    func sources(of index: Int) -> Set<Int> {
        Set(order.indices.filter { $0 % commThreads == index }.map { order[$0] })
    }

    /// Communicator thread `index`'s tasks, in pull order.
    func tasks(of index: Int) -> [Int] {
        let sources = sources(of: index)
        return tasks.indices.filter { sources.contains(tasks[$0].source) }
    }

    /// Pulls task `task`'s rows, books them on the link and posts them on the board.
    func pull(task: Int, thread: Int) throws {
        let tile = tasks[task], bytes = tile.rows.count * window.layout.rowBytes
        let start = clock.stamp()
        try link.copy { try window.pull(tile, into: steps.received) }
        if lastTask[tile.source] == task { try window.finishedPulling(from: tile.source) }
        let arrival = link.book(bytes: bytes, peer: tile.source, isSelf: tile.source == plan.rank, at: start, .inbound)
        timeline.recordTransfer(thread: thread, start: start, end: arrival,
                                "pull \(tile.rows.count) rows from rank \(tile.source)",
                                ["half": "layer0", "peer": "\(tile.source)", "expert": "\(tile.expert)", "rows": "\(tile.rows)",
                                 "bytes": "\(bytes)"])
        board.land(task: task, arrival: arrival)
    }

    /// Pushes `columns` of the results of `tiles` (all from `home`) home in one
    /// transfer; returns when it arrives there.
    func push(_ tiles: [RowTile], to home: Int, columns: Range<Int>, thread: Int, _ label: String) throws -> Double {
        let start = clock.stamp()
        try link.copy { try window.push(steps.results, tiles, to: home, region: plan.returnSlot(from: plan.rank), columns: columns) }
        let bytes = tiles.reduce(0) { $0 + $1.rows.count } * columns.count * MemoryLayout<Float>.stride
        let arrival = link.book(bytes: bytes, peer: home, isSelf: home == plan.rank, at: start, .outbound)
        timeline.recordTransfer(thread: thread, start: start, end: arrival, label,
                                ["half": "layer1", "peer": "\(home)", "columns": "\(columns)", "bytes": "\(bytes)"])
        return arrival
    }

    /// When every rank's push of `block` is here; infinity while some are missing.
    func arrivalTime(block: Int) throws -> Double {
        try window.arrivalTime(block: block, phase: phase)
    }

    /// The top-k reduce of `block`'s columns, once every rank's rows of it are home.
    func reduce(block: Int, thread: Int) {
        timeline.record(.local, thread: thread, "top-k reduce block \(block)",
                        ["half": "layer1", "block": "\(block)", "columns": "\(blocks[block])"]) {
            steps.reduce(window.returnRows, blocks[block])
        }
    }

    /// Waits on a communicator thread, recorded as waiting for `what`: until the
    /// window's doorbell moves from `seen`, or the clock reads `wakeTime`, or (device
    /// time) the GEMM threads' next event `nextLocal`. When it waits for other ranks'
    /// news of unknown time (`forPeers`) on a per-rank clock, the rank's time stands
    /// still until the host has it: their stamps may lie before anything else.
    func idle(
        _ backoff: inout Backoff, seen: UInt32, until wakeTime: Double, forPeers: Bool, nextLocal: @escaping @Sendable () -> Double?,
        thread: Int, waitingFor what: String, _ report: @autoclosure () -> String
    ) {
        let start = clock.stamp()
        if forPeers, clock.isPerRank {
            backoff.sleep(on: window.doorbell, seen: seen, report())
        } else {
            clock.awaitLocal(bell: window.doorbell, seen: seen, until: wakeTime, backoff: &backoff, report(), next: nextLocal)
        }
        timeline.recordWait(thread: thread, since: start, "wait for \(what)")
    }
}
