import CometCore
import Synchronization

/// Layer0's rows as they land: communicator threads post each pulled tile with
/// its arrival time (by the link model); GEMM threads take the earliest-pulled
/// tile that has arrived, together with the landed tiles that follow it in the
/// receive buffer (up to a cap, and to half the rows left). `rowTileOrder` lays each expert's rows out in
/// pull order, so tiles that land together sit side by side: GEMMs are small
/// while rows trickle in and grow as soon as rows wait for the CPU, which keeps
/// the tiles efficient on busy cores.
///
/// On a native link there is nothing to hide: tiles are taken one by one, in
/// pull order, so that a run's GEMMs (and the order in which weight gradients
/// accumulate) never depend on timing and training is bit-identical run to run.
///
/// Arrival times are on the rank's clock. On a device clock a GEMM thread that
/// waits steps aside until the earliest landed tile's arrival, and comes back
/// sooner if an earlier one lands meanwhile (`Clock.awaitLocal`).
final class LandingBoard: Sendable {
    struct Tile {
        /// Its index in pull order.
        let task: Int
        let source: Int
        let expert: Int
        /// Rows in the receive buffer.
        let rows: Range<Int>
        /// When the rows may be used; nil until they are pulled.
        var arrival: Double?
        var taken = false
    }

    /// The tiles in receive-buffer order; `position[task]` finds task `task` (pull order) in it.
    private let tiles: Mutex<[Tile]>
    private let position: [Int]
    /// Rung whenever a tile lands.
    private let landings = ThreadFlag()
    private let emulated: Bool
    private let clock: any Clock
    /// Where waits are recorded, how long one may last, and the window's phase (for its report).
    private let timeline: Timeline
    private let timeout: Double
    private let phase: Int

    /// `tasks` in pull order (`rowTileOrder`); `emulated`: the link is emulated,
    /// so rows are usable only once their link-model arrival time on `clock` has passed.
    init(_ tasks: [RowTile], emulated: Bool, clock: any Clock, timeline: Timeline, timeout: Double, phase: Int) {
        let byRow = tasks.indices.sorted { tasks[$0].rows.lowerBound < tasks[$1].rows.lowerBound }
        var position = [Int](repeating: 0, count: tasks.count)
        for (index, task) in byRow.enumerated() { position[task] = index }
        tiles = Mutex(byRow.map { Tile(task: $0, source: tasks[$0].source, expert: tasks[$0].expert, rows: tasks[$0].rows) })
        self.position = position
        self.emulated = emulated
        self.clock = clock
        (self.timeline, self.timeout, self.phase) = (timeline, timeout, phase)
    }

    /// Posts that the rows of task `task` have landed, usable from `arrival`.
    func land(task: Int, arrival: Double) {
        tiles.withLock { $0[position[task]].arrival = arrival }
        landings.add(1)
    }

    /// The next rows to compute (at most `maxRows` of one expert, starting with the
    /// earliest-pulled landed tile), waiting until some have arrived; nil once every
    /// row has been taken. The wait, if any, is recorded on the timeline for `thread`.
    func take(maxRows: Int, thread: Int) -> LandedRows? {
        var backoff = Backoff(timeout: timeout)
        var waitStart: Double?
        while true {
            let seen = landings.bell.value
            let now = clock.now()
            switch tiles.withLock({ next(in: &$0, now: now, maxRows: maxRows) }) {
            case .work(let rows):
                recordWait(since: waitStart, until: now, thread: thread)
                return rows
            case .done:
                recordWait(since: waitStart, until: now, thread: thread)
                return nil
            case .wait(let until):
                waitStart = waitStart ?? now
                // Emulated: the earliest landed rows still on the link; native: the next tile's landing.
                clock.awaitLocal(bell: landings.bell, seen: seen, until: until ?? .infinity, backoff: &backoff,
                                 "a tile of rows to land (phase \(phase))") { [self] in nextArrival() }
            }
        }
    }

    /// Records a wait for rows from `start` (nil: there was none) until `end`.
    private func recordWait(since start: Double?, until end: Double, thread: Int) {
        if let start { timeline.recordWait(thread: thread, since: start, until: end, "wait for rows to land") }
    }

    private enum Step { case work(LandedRows), done, wait(until: Double?) }

    /// Takes the rows to compute at `now` off `all`, or says what to wait for.
    private func next(in all: inout [Tile], now: Double, maxRows: Int) -> Step {
        func usable(_ index: Int) -> Bool {
            guard !all[index].taken, let arrival = all[index].arrival else { return false }
            return arrival <= now
        }
        guard let next = position.first(where: { !all[$0].taken }) else { return .done }
        guard let first = emulated ? position.first(where: usable) : (usable(next) ? next : nil) else {
            return .wait(until: emulated ? Self.earliestArrival(all) : nil)
        }
        // Guided: at most half of the rows not taken yet, so that the last GEMMs (and
        // what waits for them: comet-rows' last pushes) shrink as the work runs out.
        let left = all.lazy.filter { !$0.taken }.reduce(0) { $0 + $1.rows.count }
        let cap = min(maxRows, max(all[first].rows.count, left / 2))
        var last = first
        while emulated, last + 1 < all.count, all[last + 1].expert == all[first].expert, usable(last + 1),
              all[last + 1].rows.upperBound - all[first].rows.lowerBound <= cap {
            last += 1
        }
        for index in first...last { all[index].taken = true }
        return .work(LandedRows(tasks: all[first...last].map(\.task), sources: Array(Set(all[first...last].map(\.source))).sorted(),
                                expert: all[first].expert, rows: all[first].rows.lowerBound..<all[last].rows.upperBound))
    }

    /// When the earliest landed tile not taken yet arrives (nil: none has landed).
    private static func earliestArrival(_ all: [Tile]) -> Double? {
        all.lazy.filter { !$0.taken }.compactMap(\.arrival).min()
    }

    /// When the rows a waiting GEMM thread can take next have arrived (nil: none has
    /// landed yet): the earliest landed tile's arrival, or on a native link the
    /// next tile's in pull order; at once when another thread has taken the last.
    private func nextArrival() -> Double? {
        tiles.withLock { all in
            if all.allSatisfy(\.taken) { return -.infinity }
            if emulated { return Self.earliestArrival(all) }
            return position.first(where: { !all[$0].taken }).flatMap { all[$0].arrival }
        }
    }
}

/// Rows a GEMM thread took from the board: landed tiles of one expert, adjacent in
/// the receive buffer.
struct LandedRows {
    /// The tiles' tasks (indices in pull order).
    let tasks: [Int]
    /// Their source ranks.
    let sources: [Int]
    let expert: Int
    /// Rows in the receive buffer.
    let rows: Range<Int>
}
