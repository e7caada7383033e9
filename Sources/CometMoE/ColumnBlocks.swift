import CometCore
import CometKernels
import CometMPI

/// The paper's layer1: once every row's layer0 is done, GEMM threads compute
/// column blocks across all local experts, each block as GEMMs of row tiles of at
/// most `CometPass.maxGEMMRows` rows, as a GPU computes a column block in tiles of
/// rows and columns (`rowTiles`); communicator threads push each block
/// home as soon as it is computed, and top-k-reduce the blocks that have come home
/// from every rank, while the GEMM threads go on with the next block. Only the last
/// block is exposed.
struct ColumnBlocks: Layer1Strategy {
    let pass: CometPass
    /// Hands out the blocks to GEMM threads.
    let next: TaskCounter
    /// Communicator threads whose pulls are done.
    let pullsDone = ThreadFlag()
    /// Blocks the GEMM threads have computed, and when.
    let computedBlocks: TaskMarks
    /// Blocks the communicator threads have pushed to every home.
    let pushedBlocks = ThreadFlag()
    /// Each home's tiles: what one push of a block carries there.
    let tilesOf: [Int: [RowTile]]
    /// The row tiles every column block's GEMMs cover: each expert's rows in pieces of
    /// at most `maxGEMMRows`. A GEMM over all of an expert's rows re-reads an h too
    /// large for the caches for every block: at the default shape a 128-column block
    /// over 2048 rows cost 5.0 ms per 1024 rows in the sampled table, against 3.8 to
    /// 4.0 ms in 256- to 1024-row tiles, about what the whole GEMM2 costs per column.
    let rowTiles: [(expert: Int, rows: Range<Int>)]

    init(_ pass: CometPass) {
        self.pass = pass
        next = TaskCounter(count: pass.blocks.count)
        computedBlocks = TaskMarks(count: pass.blocks.count)
        tilesOf = Dictionary(grouping: pass.tasks, by: \.source)
        let plan = pass.plan
        rowTiles = (0..<plan.expertsPerRank).flatMap { expert in
            tiles(plan.expertRows(expert), size: pass.maxGEMMRows).map { (expert: expert, rows: $0) }
        }
    }

    func communicator(index: Int) -> any Layer1Communicator { BlockPusher(strategy: self, index: index) }

    /// Nothing: layer1 starts once every row's layer0 is done.
    func computed(_ rows: LandedRows, thread: Int) {}

    func afterLayer0(thread: Int) throws {
        let experts = pass.call.experts
        while let block = next.take() {
            let columns = pass.blocks[block]
            pass.timeline.recordGEMM(thread: thread, "column block \(block)",
                                     ["half": "layer1", "block": "\(block)", "columns": "\(columns)"]) {
                rowTiles.reduce(0) { $0 + pass.steps.columnBlock(experts, $1.expert, $1.rows, columns) }
            }
            computedBlocks.mark([block], at: pass.clock.now())
            pass.window.doorbell?.ring()
        }
    }
}

/// A communicator thread's column blocks: every `commThreads`-th block, pushed to
/// every home as it is computed and reduced here once it has come home.
struct BlockPusher: Layer1Communicator {
    let strategy: ColumnBlocks
    let index: Int

    /// Pushes and reduces this thread's blocks once every communicator thread's
    /// pulls are done (the other parts are the protocol's: nothing between pulls).
    func finish(thread: Int) throws {
        let pass = strategy.pass, computed = strategy.computedBlocks
        // Every source has published this phase before any block is pushed.
        strategy.pullsDone.add(1, at: pass.clock.now())
        strategy.pullsDone.wait(toReach: pass.commThreads, on: pass.clock, timeout: pass.timeout,
                                "the other communicator threads' pulls (phase \(pass.phase))")
        let mine = pass.blocks.indices.filter { $0 % pass.commThreads == index }
        var (pushed, reduced) = (0, 0)
        var backoff = Backoff(timeout: pass.timeout)
        while reduced < mine.count {
            let seen = pass.window.doorbell?.value ?? 0
            let now = pass.clock.now()
            if pushed < mine.count, !computed.marked(among: [mine[pushed]], by: now).isEmpty {
                try push(block: mine[pushed], thread: thread)
                pushed += 1
                strategy.pushedBlocks.add(1, at: pass.clock.now())
                backoff = Backoff(timeout: pass.timeout)
                continue
            }
            let homeAt = try pass.arrivalTime(block: mine[reduced])
            if homeAt <= now {
                pass.reduce(block: mine[reduced], thread: thread)
                reduced += 1
                backoff = Backoff(timeout: pass.timeout)
                continue
            }
            // Wait until a block is computed here, or the other communicator threads have
            // pushed every block (unless seen already), or the next one's pushes land.
            // For peers' pushes only while no other communicator thread of this rank
            // still has blocks to push that peers may be waiting for.
            let next = pushed < mine.count ? [mine[pushed]] : []
            let (all, blocks) = (strategy.pushedBlocks, pass.blocks.count)
            let othersDone = pass.commThreads == 1 || all.current == blocks
            // An event already seen is no event to wait for: its time has passed, so the
            // thread would be given the turn again at once and spin until `homeAt`.
            pass.idle(&backoff, seen: seen, until: homeAt, forPeers: homeAt == .infinity && reduced < pushed && othersDone,
                      nextLocal: { computed.earliest(among: next) ?? (othersDone || all.current < blocks ? nil : all.time) },
                      thread: thread,
                      waitingFor: "a block to finish or come home",
                      "waited \(pass.timeout) s in phase \(pass.phase) for block \(mine[min(pushed, mine.count - 1)]) "
                          + "to be computed or block \(mine[reduced]) to come home from every rank")
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
