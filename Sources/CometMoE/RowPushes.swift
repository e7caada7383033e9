import CometCore
import CometKernels
import CometMPI

/// comet-rows' layer1: right after a GEMM thread has run layer0 on a landed row
/// group, it runs the group's GEMM2 over every column and marks its tiles computed;
/// the communicator thread that pulled a tile pushes it home at once, and after a
/// home's last tile announces the arrival (layer1 is one block of every column).
/// The home reduces once, when every rank's rows are in.
struct RowPushes: Layer1Strategy {
    let pass: CometPass
    /// Tiles whose layer1 is done.
    let computedTiles: TaskMarks
    /// Communicator threads that have pushed all their tiles.
    let pushesDone = ThreadFlag()

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
        computedTiles.mark(rows.tasks, at: pass.clock.now())
        pass.window.doorbell?.ring()
    }

    /// Nothing: every row's layer1 is done with its layer0.
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
    /// Whether it has counted itself in `pushesDone`.
    private var counted = false

    init(strategy: RowPushes, index: Int) {
        self.strategy = strategy
        let pass = strategy.pass
        unpushed = pass.tasks(of: index)
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
        let now = pass.clock.now()
        let (marks, unpushed) = (strategy.computedTiles, self.unpushed)
        var step = Layer1Step(progress: try pushComputed(by: now, thread: thread),
                              nextLocal: { marks.earliest(among: unpushed) },
                              waitingFor: unpushed.isEmpty ? "rows to come home" : "rows to compute")
        if pullsDone, self.unpushed.isEmpty, !counted {
            strategy.pushesDone.add(1, at: now)
            counted = true
        }
        guard reducePending, pullsDone, self.unpushed.isEmpty else { return step }
        // This rank's other communicator threads still push rows that peers wait for:
        // wait for them here, before waiting for the peers' rows.
        let (done, threads) = (strategy.pushesDone, pass.commThreads)
        guard done.current >= threads else {
            (step.nextLocal, step.waitingFor) = ({ done.current >= threads ? done.time : nil }, "the other communicator threads' pushes")
            return step
        }
        let homeAt = try pass.arrivalTime(block: 0)
        if homeAt <= now {
            pass.reduce(block: 0, thread: thread)
            (reducePending, step.progress) = (false, true)
        } else {
            (step.wakeAt, step.waitsForPeers) = (homeAt, homeAt == .infinity)
        }
        return step
    }

    /// Pushes home every tile computed by `now`; true if it did anything.
    private mutating func pushComputed(by now: Double, thread: Int) throws -> Bool {
        let pass = strategy.pass
        // Those marked by now, in pull order; tiles marked meanwhile wait for the next step.
        let marked = strategy.computedTiles.marked(among: unpushed, by: now)
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
