import CometCore
import CometKernels
import CometMPI

/// How comet cuts layer1 (GEMM2 and the combine): the part in which `comet`
/// (`ColumnBlocks`, the paper's) and `comet-rows` (`RowPushes`) differ. One per
/// pass, shared by its threads.
protocol Layer1Strategy: Sendable {
    /// A communicator thread's layer1 work, with its own state.
    func communicator(index: Int) -> any Layer1Communicator
    /// On a GEMM thread, right after layer0 of `rows`.
    func computed(_ rows: LandedRows, thread: Int) throws
    /// On a GEMM thread, once every row's layer0 is done.
    func afterLayer0(thread: Int) throws
}

/// One communicator thread's layer1 work: some between its pulls, the rest after.
protocol Layer1Communicator {
    /// Nothing left to do between pulls.
    var isDone: Bool { get }
    /// `source` has published this phase and this thread pulls nothing from it.
    mutating func nothingToPull(from source: Int) throws
    /// Between pulls: does whatever is ready (`pullsDone`: this thread has pulled all it will).
    mutating func step(pullsDone: Bool, thread: Int) throws -> Layer1Step
    /// Once this thread's pulls are done and `isDone` holds.
    mutating func finish(thread: Int) throws
}

/// What a communicator's step did, and what it waits for if nothing.
struct Layer1Step {
    var progress = false
    /// When to wake up at the latest, on the clock.
    var wakeAt = Double.infinity
    var waitingFor = ""
}

/// The paper's layer1: once every row's layer0 is done, GEMM threads compute
/// column blocks across all local experts; communicator threads push each block
/// home as soon as it is computed, and top-k-reduce the blocks that have come home
/// from every rank, while the GEMM threads go on with the next block. Only the last
/// block is exposed.
struct ColumnBlocks: Layer1Strategy {
    let pass: CometPass
    /// Hands out the blocks to GEMM threads.
    let next: TaskCounter
    /// Communicator threads whose pulls are done.
    let pullsDone = ThreadFlag()
    /// Each home's tiles: what one push of a block carries there.
    let tilesOf: [Int: [RowTile]]

    init(_ pass: CometPass) {
        self.pass = pass
        next = TaskCounter(count: pass.blocks.count)
        tilesOf = Dictionary(grouping: pass.tasks, by: \.source)
    }

    func communicator(index: Int) -> any Layer1Communicator { BlockPusher(strategy: self, index: index) }

    func computed(_ rows: LandedRows, thread: Int) {}

    func afterLayer0(thread: Int) throws {
        let (plan, experts) = (pass.plan, pass.call.experts)
        while let block = next.take() {
            let columns = pass.blocks[block]
            pass.timeline.recordGEMM(thread: thread, "column block \(block)",
                                     ["half": "layer1", "block": "\(block)", "columns": "\(columns)"]) {
                (0..<plan.expertsPerRank).reduce(0) { $0 + pass.steps.columnBlock(experts, $1, plan.expertRows($1), columns) }
            }
            try pass.window.markComputed(block: block)
        }
    }
}

/// A communicator thread's column blocks: every `commThreads`-th block, pushed to
/// every home as it is computed and reduced here once it has come home.
struct BlockPusher: Layer1Communicator {
    let strategy: ColumnBlocks
    let index: Int

    var isDone: Bool { true }
    func nothingToPull(from source: Int) {}
    func step(pullsDone: Bool, thread: Int) -> Layer1Step { Layer1Step() }

    func finish(thread: Int) throws {
        let pass = strategy.pass
        // Every source has published this phase before any block is pushed.
        strategy.pullsDone.add(1)
        strategy.pullsDone.wait(toReach: pass.commThreads, timeout: pass.timeout,
                                "the other communicator threads' pulls (phase \(pass.phase))")
        let mine = pass.blocks.indices.filter { $0 % pass.commThreads == index }
        var (pushed, reduced) = (0, 0)
        var backoff = Backoff(timeout: pass.timeout)
        while reduced < mine.count {
            let seen = pass.window.doorbell?.value ?? 0
            if pushed < mine.count, try pass.window.isComputed(block: mine[pushed]) {
                try push(block: mine[pushed], thread: thread)
                pushed += 1
                backoff = Backoff(timeout: pass.timeout)
                continue
            }
            let homeAt = try pass.arrivalTime(block: mine[reduced])
            if homeAt <= pass.clock.now() {
                pass.reduce(block: mine[reduced], thread: thread)
                reduced += 1
                backoff = Backoff(timeout: pass.timeout)
            } else {
                // Sleep until a block is computed or pushed here, or the next one's pushes land.
                pass.sleep(&backoff, seen: seen, until: homeAt, thread: thread, waitingFor: "a block to finish or come home",
                           "waited \(pass.timeout) s in phase \(pass.phase) for block \(mine[min(pushed, mine.count - 1)]) "
                               + "to be computed or block \(mine[reduced]) to come home from every rank")
            }
        }
    }

    /// Pushes `block` to every home, others first, and announces its arrival there.
    private func push(block: Int, thread: Int) throws {
        let pass = strategy.pass
        for home in pass.order.dropFirst() + [pass.plan.rank] {
            let arrival = try pass.push(strategy.tilesOf[home] ?? [], to: home, columns: pass.blocks[block], thread: thread,
                                        "push block \(block) to rank \(home)")
            try pass.window.announce(block: block, to: home, arrival: arrival)
        }
    }
}

/// comet-rows' layer1: right after a GEMM thread has run layer0 on a landed row
/// group, it runs the group's GEMM2 over every column and marks its tiles computed;
/// the communicator thread that pulled a tile pushes it home at once, and after a
/// home's last tile announces the arrival (layer1 is one block of every column).
/// The home reduces once, when every rank's rows are in.
struct RowPushes: Layer1Strategy {
    let pass: CometPass
    /// Tiles whose layer1 is done.
    let computedTiles: TaskMarks

    init(_ pass: CometPass) {
        self.pass = pass
        computedTiles = TaskMarks(count: pass.tasks.count)
    }

    func communicator(index: Int) -> any Layer1Communicator { RowPusher(strategy: self, index: index) }

    func computed(_ rows: LandedRows, thread: Int) {
        pass.timeline.recordGEMM(thread: thread, "rows \(rows.rows), expert \(rows.expert)",
                                 ["half": "layer1", "expert": "\(rows.expert)", "rows": "\(rows.rows)"]) {
            pass.steps.columnBlock(pass.call.experts, rows.expert, rows.rows, pass.blocks[0])
        }
        computedTiles.mark(rows.tasks)
        pass.window.doorbell?.ring()
    }

    func afterLayer0(thread: Int) {}
}

/// A communicator thread's row pushes: the tiles it pulled, pushed home as they are
/// computed; the first communicator thread also reduces, once all rows are home.
struct RowPusher: Layer1Communicator {
    let strategy: RowPushes
    /// Its tiles not pushed yet, in pull order.
    private var unpushed: [Int]
    /// Per home, the pushes left and the latest arrival so far.
    private var pushesLeft: [Int: Int]
    private var latest: [Int: Double] = [:]
    private var reducePending: Bool

    init(strategy: RowPushes, index: Int) {
        self.strategy = strategy
        let pass = strategy.pass
        unpushed = PendingPulls.tasks(of: index, pass)
        pushesLeft = Dictionary(grouping: unpushed, by: { pass.tasks[$0].source }).mapValues(\.count)
        reducePending = index == 0
    }

    var isDone: Bool { unpushed.isEmpty && !reducePending }

    /// A home this thread sends nothing to still counts its (empty) push as arrived.
    func nothingToPull(from source: Int) throws {
        try strategy.pass.window.announce(block: 0, to: source, arrival: 0)
    }

    mutating func step(pullsDone: Bool, thread: Int) throws -> Layer1Step {
        let pass = strategy.pass
        var step = Layer1Step(progress: try pushComputed(thread: thread),
                              waitingFor: unpushed.isEmpty ? "rows to come home" : "rows to compute")
        if reducePending, pullsDone, unpushed.isEmpty {
            let homeAt = try pass.arrivalTime(block: 0)
            if homeAt <= pass.clock.now() {
                pass.reduce(block: 0, thread: thread)
                (reducePending, step.progress) = (false, true)
            } else {
                step.wakeAt = homeAt
            }
        }
        return step
    }

    func finish(thread: Int) {}

    /// Pushes home every tile computed so far; true if it did anything.
    private mutating func pushComputed(thread: Int) throws -> Bool {
        let pass = strategy.pass
        // Those marked now, in pull order; tiles marked meanwhile wait for the next step.
        let marked = strategy.computedTiles.marked(among: unpushed)
        let ready = unpushed.filter { marked.contains($0) }
        unpushed.removeAll { marked.contains($0) }
        for task in ready {
            let tile = pass.tasks[task], home = tile.source
            let arrival = try pass.push([tile], to: home, columns: pass.blocks[0], thread: thread,
                                        "push \(tile.rows.count) rows to rank \(home)")
            latest[home] = max(latest[home] ?? 0, arrival)
            pushesLeft[home]! -= 1
            if pushesLeft[home] == 0 { try pass.window.announce(block: 0, to: home, arrival: latest[home]!) }
        }
        return !ready.isEmpty
    }
}
