import CometCore
import CometKernels
import CometMPI

/// A communicator thread's part of a comet pass: it pulls its sources' tiles in
/// pull order as the sources publish, and does layer1's communication as the
/// layer1 strategy says. Sources that publish later are skipped (ranks drift apart
/// between layers), so a late rank holds up only its own rows. (On a device clock
/// a source not heard from yet may have published earlier in device time: it is
/// waited for on the host, which costs no device time; `PendingPulls.next`.)
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
            let now = pass.clock.now()
            let silent = try pulls.takePublishedSilent(pass, by: now)
            for source in silent {
                try pass.window.finishedPulling(from: source)
                try pushes.nothingToPull(from: source)
            }
            if !silent.isEmpty { continue }
            let next = try pulls.next(pass, by: now)
            if case .pull(let task) = next {
                try pass.pull(task: task, thread: thread)
                backoff = Backoff(timeout: pass.timeout)
                continue
            }
            let step = try pushes.step(pullsDone: pulls.isDone, thread: thread)
            if step.progress {
                backoff = Backoff(timeout: pass.timeout)
                continue
            }
            guard case .wait(let published, let unknown) = next else { continue }
            let late = pulls.late(pass)
            let what = late.isEmpty ? step.waitingFor : "ranks \(late) to publish"
            pass.idle(&backoff, seen: seen, until: min(published, step.wakeAt), forPeers: unknown || step.waitsForPeers,
                      nextLocal: step.nextLocal, thread: thread, waitingFor: what,
                      "waited \(pass.timeout) s in phase \(pass.phase) for \(what)")
        }
        try pushes.finish(thread: thread)
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
    /// Sources seen publishing this phase, and when they did.
    private var published: [Int: Double] = [:]

    init(_ pass: CometPass, index: Int) {
        tasks = pass.tasks(of: index)
        silent = pass.sources(of: index).filter { pass.lastTask[$0] == nil }
    }

    var isDone: Bool { tasks.isEmpty && silent.isEmpty }

    /// What to pull at `now`, or what to wait for.
    enum Next {
        /// This task, taken off the list.
        case pull(Int)
        /// Nothing: the earliest later publication is at `published` (infinity: none
        /// known); `unknown`: some sources have not been heard from.
        case wait(published: Double, unknown: Bool)
    }

    /// The first task in pull order whose source had published by `now`. Sources not
    /// heard from are skipped, on a shared clock; on a per-rank clock one of them may
    /// have published before `now`, so nothing after it in pull order is taken
    /// before the host has heard from it.
    mutating func next(_ pass: CometPass, by now: Double) throws -> Next {
        var (earliest, unknown) = (Double.infinity, false)
        for source in silent {
            if let time = try publishTime(source, pass) { earliest = min(earliest, time) } else { unknown = true }
        }
        for position in tasks.indices {
            guard let time = try publishTime(pass.tasks[tasks[position]].source, pass) else {
                unknown = true
                if pass.clock.isPerRank { break }
                continue
            }
            if time <= now { return .pull(tasks.remove(at: position)) }
            earliest = min(earliest, time)
        }
        return .wait(published: earliest, unknown: unknown)
    }

    /// The silent sources that had published by `now`, taken off the list.
    mutating func takePublishedSilent(_ pass: CometPass, by now: Double) throws -> [Int] {
        var found: [Int] = []
        for source in silent where try publishTime(source, pass).map({ $0 <= now }) ?? false { found.append(source) }
        silent.subtract(found)
        return found
    }

    /// Sources not yet seen publishing, sorted.
    func late(_ pass: CometPass) -> [Int] {
        Set(tasks.map { pass.tasks[$0].source }).union(silent).subtracting(published.keys).sorted()
    }

    /// When `source` published this pass's phase (remembered once seen); nil before.
    /// On a clock the ranks share, a published source counts as published at once:
    /// hosts' clocks need not agree.
    private mutating func publishTime(_ source: Int, _ pass: CometPass) throws -> Double? {
        if let time = published[source] { return time }
        guard let stamp = try pass.window.publishTime(source, phase: pass.phase) else { return nil }
        let time = pass.clock.isPerRank ? stamp : -.infinity
        published[source] = time
        return time
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
            sumGradient(work, thread: thread)
            pass.rowsDone.add(work.rows.count, at: pass.clock.now())
        }
        // Every row's layer0 is done before layer1 or the tail read all of an expert's rows.
        let waitStart = pass.clock.now()
        pass.rowsDone.wait(toReach: pass.plan.receivedRows, on: pass.clock, timeout: pass.timeout, "the other GEMM threads' rows")
        // Ends with the turn taken: layer1 and the tail hand out their tasks first come, first served.
        pass.timeline.recordWait(thread: thread, since: waitStart, until: pass.clock.now(), "wait for the other GEMM threads' rows")
        try layer1.afterLayer0(thread: thread)
        while let task = pass.tail.take() {
            pass.timeline.recordGEMM(thread: thread, "weight gradient", ["half": "tail"]) { pass.steps.tail[task](experts) }
        }
    }

    /// Sums layer0's weight gradient over the groups that `work` completes (`OrderedGradient`).
    private func sumGradient(_ work: LandedRows, thread: Int) {
        guard let gradient = pass.gradient, let step = pass.steps.rowGradient else { return }
        gradient.computed(work.rows, expert: work.expert) { rows in
            pass.timeline.recordGEMM(thread: thread, "weight gradient rows \(rows), expert \(work.expert)",
                                     ["half": "layer0", "expert": "\(work.expert)", "rows": "\(rows)"]) {
                step(pass.call.experts, work.expert, rows)
            }
        }
    }
}
