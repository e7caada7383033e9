import CometCore
import CometKernels
import CometMPI

/// A communicator thread's part of a comet pass: it pulls its sources' tiles in
/// pull order as the sources publish, and does layer1's communication as the
/// layer1 strategy says. Sources that have not published yet are skipped (ranks
/// drift apart between layers), so a late rank holds up only its own rows.
struct PullRows {
    let pass: CometPass
    let layer1: any Layer1Strategy
    /// Which communicator thread this is (0..<commThreads).
    let index: Int

    func run(thread: Int) throws {
        var pulls = PendingPulls(pass, index: index)
        var pushes = layer1.communicator(index: index)
        var backoff = Backoff(timeout: pass.timeout)
        while !pulls.isDone || !pushes.isDone {
            let seen = pass.window.doorbell?.value ?? 0
            var progress = try pullPublished(&pulls, &pushes, thread: thread)
            let step = try pushes.step(pullsDone: pulls.isDone, thread: thread)
            progress = progress || step.progress
            if progress {
                backoff = Backoff(timeout: pass.timeout)
                continue
            }
            let late = pulls.late(pass)
            let what = late.isEmpty ? step.waitingFor : "ranks \(late) to publish"
            pass.sleep(&backoff, seen: seen, until: step.wakeAt, thread: thread, waitingFor: what,
                       "waited \(pass.timeout) s in phase \(pass.phase) for \(what)")
        }
        try pushes.finish(thread: thread)
    }

    /// Pulls every tile whose source has published; true if it did anything.
    private func pullPublished(_ pulls: inout PendingPulls, _ pushes: inout any Layer1Communicator, thread: Int) throws -> Bool {
        var progress = false
        for source in try pulls.takePublishedSilent(pass) {
            try pass.window.finishedPulling(from: source)
            try pushes.nothingToPull(from: source)
            progress = true
        }
        while let task = try pulls.takePublished(pass) {
            try pass.pull(task: task, thread: thread)
            progress = true
        }
        return progress
    }
}

/// What one communicator thread has left to pull: its sources are every
/// `commThreads`-th rank in pull order.
struct PendingPulls {
    /// Its tasks not pulled yet, in pull order.
    private var tasks: [Int]
    /// Its sources with nothing to pull, not yet seen publishing. They are still
    /// waited for: a rank that has published this phase has finished the last one,
    /// so nothing this rank pushes reaches it early.
    private var silent: Set<Int>
    /// Sources seen publishing this phase.
    private var published = Set<Int>()

    init(_ pass: CometPass, index: Int) {
        tasks = pass.tasks(of: index)
        silent = pass.sources(of: index).filter { pass.lastTask[$0] == nil }
    }

    var isDone: Bool { tasks.isEmpty && silent.isEmpty }

    /// The first task in pull order whose source has published, taken off the list.
    mutating func takePublished(_ pass: CometPass) throws -> Int? {
        for position in tasks.indices where try hasPublished(pass.tasks[tasks[position]].source, pass) {
            return tasks.remove(at: position)
        }
        return nil
    }

    /// The silent sources that have published, taken off the list.
    mutating func takePublishedSilent(_ pass: CometPass) throws -> [Int] {
        var found: [Int] = []
        for source in silent where try hasPublished(source, pass) { found.append(source) }
        silent.subtract(found)
        return found
    }

    /// Sources not yet seen publishing, sorted.
    func late(_ pass: CometPass) -> [Int] {
        Set(tasks.map { pass.tasks[$0].source }).union(silent).subtracting(published).sorted()
    }

    /// Whether `source` has published this pass's phase (remembered once seen).
    private mutating func hasPublished(_ source: Int, _ pass: CometPass) throws -> Bool {
        if published.contains(source) { return true }
        guard try pass.window.hasPublished(source, phase: pass.phase) else { return false }
        published.insert(source)
        return true
    }
}

/// A GEMM thread's part of a comet pass: layer0 on whatever rows have landed
/// (own rank's first, up to `tilesPerGEMM` tiles at once), then layer1 as the
/// strategy says, then the tail.
struct ComputeRows {
    let pass: CometPass
    let layer1: any Layer1Strategy

    func run(thread: Int) throws {
        let experts = pass.call.experts
        while let work = pass.board.take(maxRows: pass.maxGEMMRows, thread: thread) {
            let sources = work.sources.map(String.init).joined(separator: ",")
            pass.timeline.recordGEMM(thread: thread, "rows \(work.rows) from ranks \(sources), expert \(work.expert)",
                                     ["half": "layer0", "peers": sources, "expert": "\(work.expert)", "rows": "\(work.rows)"]) {
                pass.steps.rowTile(experts, work.expert, work.rows)
            }
            try layer1.computed(work, thread: thread)
            pass.rowsDone.add(work.rows.count)
        }
        // Every row's layer0 is done before layer1 or the tail read all of an expert's rows.
        let waitStart = pass.clock.now()
        pass.rowsDone.wait(toReach: pass.plan.receivedRows, timeout: pass.timeout, "the other GEMM threads' rows")
        pass.timeline.recordWait(thread: thread, since: waitStart, "wait for the other GEMM threads' rows")
        try layer1.afterLayer0(thread: thread)
        while let task = pass.tail.take() {
            pass.timeline.recordGEMM(thread: thread, "weight gradient", ["half": "tail"]) { pass.steps.tail[task](experts) }
        }
    }
}
