import CometMPI
import Synchronization

/// Layer0's rows as they land: communicator threads post each pulled tile with
/// its arrival time (by the link model); GEMM threads take the rows that have
/// arrived, as many at once as are ready (up to a cap), own rank's first, then
/// rank+1, rank+2, ... So GEMMs are small while rows trickle in and grow as soon
/// as rows wait for the CPU, which keeps the tiles efficient on busy cores.
final class LandingBoard: Sendable {
    /// Rows of one (source, expert) segment of the receive buffer.
    struct Segment {
        let source: Int
        let expert: Int
        let rows: Range<Int>
        /// Ends of the landed tiles, in order, with their arrival times.
        var landed: [(end: Int, arrival: Double)] = []
        /// Rows below this index have been taken by a GEMM thread.
        var taken: Int

        init(source: Int, expert: Int, rows: Range<Int>) {
            (self.source, self.expert, self.rows, taken) = (source, expert, rows, rows.lowerBound)
        }
    }

    private let segments: Mutex<[Segment]>
    /// Rung whenever a tile lands.
    private let landings = ThreadFlag()
    private let respectArrivals: Bool

    /// Segments in the order GEMM threads prefer them; `respectArrivals`: rows are
    /// usable only once their link-model arrival time has passed.
    init(_ plan: RoutingPlan, order: [Int], respectArrivals: Bool) {
        segments = Mutex(order.flatMap { source in
            (0..<plan.expertsPerRank).map { Segment(source: source, expert: $0, rows: plan.receiveSegment(source: source, expert: $0)) }
        }.filter { !$0.rows.isEmpty })
        self.respectArrivals = respectArrivals
    }

    /// Posts that rows up to `end` of `source`'s segment for `expert` have landed, usable from `arrival`.
    func land(source: Int, expert: Int, upTo end: Int, arrival: Double) {
        segments.withLock { all in
            if let index = all.firstIndex(where: { $0.source == source && $0.expert == expert }) {
                all[index].landed.append((end, arrival))
            }
        }
        landings.add(1)
    }

    /// The next rows to compute (at most `maxRows`, from one segment), waiting until
    /// some have arrived; nil once every row has been taken.
    /// The wait, if any, is recorded on `timeline` for `thread`.
    func take(maxRows: Int, timeout: Double, phase: Int, timeline: Timeline, thread: Int) -> (source: Int, expert: Int, rows: Range<Int>)? {
        let waitStart = monotonicSeconds()
        defer { timeline.recordWait(thread: thread, since: waitStart, "wait for rows to land") }
        while true {
            let seen = landings.current
            let now = monotonicSeconds()
            enum Step { case work(Int, Int, Range<Int>), done, wait(until: Double?) }
            let step: Step = segments.withLock { all in
                var nextArrival: Double?
                var remaining = false
                for index in all.indices where all[index].taken < all[index].rows.upperBound {
                    remaining = true
                    let ready = all[index].landed.last { !respectArrivals || $0.arrival <= now }?.end ?? all[index].rows.lowerBound
                    if ready > all[index].taken {
                        let rows = all[index].taken..<min(ready, all[index].taken + maxRows)
                        all[index].taken = rows.upperBound
                        return .work(all[index].source, all[index].expert, rows)
                    }
                    if let pending = all[index].landed.first(where: { $0.end > all[index].taken })?.arrival {
                        nextArrival = min(nextArrival ?? pending, pending)
                    }
                }
                return remaining ? .wait(until: nextArrival) : .done
            }
            switch step {
            case .work(let source, let expert, let rows): return (source, expert, rows)
            case .done: return nil
            case .wait(let until?):
                sleep(until: min(until, now + 0.01))
            case .wait(nil):
                landings.wait(toReach: seen + 1, timeout: timeout, "a tile of rows to land (phase \(phase))")
            }
        }
    }
}
