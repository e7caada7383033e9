import CometCore
import CometKernels
import CometMPI

/// Row exchanges through MPI all-to-all-v, booked on the layer's `LinkClock` like
/// comet's pulls and pushes: what the sequential and chunked schedules use to
/// dispatch and combine.
///
/// On the wire, rows from each source arrive *source-major* (by source, then local
/// expert, then token); the expert side keeps them expert-major, so a dispatch
/// scatters them into place after the exchange and a combine gathers them before.
/// With TP > 1 a home rank sends each segment to every TP rank of its EP index,
/// and gets back one partial result per TP rank, in that TP index's region.
enum AllToAll {
    /// Sends send-order rows `rows` [T k, N] to their experts and leaves them in
    /// `received` [R, N], expert-major. `staging` holds at least R rows.
    static func dispatch(
        _ rows: MatrixView, _ plan: RoutingPlan, group: Communicator, link: LinkClock, staging: MatrixView, into received: MatrixView
    ) throws {
        let ranges = (0..<plan.ranks).map { plan.sendRange(destination: $0) }
        try exchange(rows, sendCounts: ranges.map(\.count), sendOffsets: ranges.map(\.lowerBound),
                     into: staging, receiveCounts: (0..<plan.ranks).map { plan.receiveCount(source: $0) }, receiveOffsets: nil,
                     group, link)
        reorder(plan, wire: staging, buffer: received, toBuffer: true)
    }

    /// Sends expert-major rows `results` [R, N] back to their home ranks, where
    /// they land in send order in `returned` [TP T k, N], each TP index's partial
    /// results in its own region.
    static func combine(
        _ results: MatrixView, _ plan: RoutingPlan, group: Communicator, link: LinkClock, staging: MatrixView, into returned: MatrixView
    ) throws {
        reorder(plan, wire: staging, buffer: results, toBuffer: false)
        let ranges = (0..<plan.ranks).map { plan.sendRange(destination: $0) }
        try exchange(staging, sendCounts: (0..<plan.ranks).map { plan.receiveCount(source: $0) }, sendOffsets: nil,
                     into: returned, receiveCounts: ranges.map(\.count),
                     receiveOffsets: (0..<plan.ranks).map { plan.returnSlot(from: $0) * plan.routedRows + ranges[$0].lowerBound },
                     group, link)
    }

    /// Copies rows between the wire's source-major order and the expert-major buffer.
    private static func reorder(_ plan: RoutingPlan, wire: MatrixView, buffer: MatrixView, toBuffer: Bool) {
        let n = wire.columns
        let rows = (0..<plan.ranks).reduce(0) { $0 + plan.receiveCount(source: $1) }
        elementwise("reorder rows", elements: rows * n) {
            var at = 0
            for source in 0..<plan.ranks {
                for expert in 0..<plan.expertsPerRank {
                    let segment = plan.receiveSegment(source: source, expert: expert)
                    for offset in 0..<segment.count {
                        let wireRow = wire.base + (at + offset) * wire.rowStride
                        let bufferRow = buffer.base + (segment.lowerBound + offset) * buffer.rowStride
                        if toBuffer { bufferRow.update(from: wireRow, count: n) } else { wireRow.update(from: bufferRow, count: n) }
                    }
                    at += segment.count
                }
            }
        }
    }

    /// MPI_Alltoallv of whole rows (counts and offsets in rows; nil offsets: packed
    /// in rank order). Each peer's rows are booked on its link as the exchange starts,
    /// the larger direction's (the link carries both on one queue), and the exchange
    /// ends when the last of them arrives. On per-rank clocks a peer's transfer starts
    /// when both it and this rank have started the exchange.
    private static func exchange(
        _ send: MatrixView, sendCounts: [Int], sendOffsets: [Int]?,
        into receive: MatrixView, receiveCounts: [Int], receiveOffsets: [Int]?, _ group: Communicator, _ link: LinkClock
    ) throws {
        let n = send.columns
        precondition(send.rowStride == n && receive.rowStride == n, "exchanges move whole, packed rows")
        let rowBytes = MemoryLayout<Float>.stride * n
        let now = link.clock.now()
        let starts = link.clock.isPerRank ? try group.allGather([now]) : [Double](repeating: now, count: group.size)
        let arrivals = (0..<group.size).map { peer in
            link.book(bytes: max(sendCounts[peer], receiveCounts[peer]) * rowBytes, peer: peer, isSelf: peer == group.rank,
                      at: max(now, starts[peer]), .both)
        }
        // A time-only run books the rows and synchronises as the exchange does, moving none.
        let width = ModelledKernels.isTimeOnly ? 0 : n
        try group.allToAllV(
            UnsafeBufferPointer(start: send.base, count: send.rows * width),
            sendCounts: sendCounts.map { $0 * width }, sendOffsets: sendOffsets?.map { $0 * width },
            into: UnsafeMutableBufferPointer(start: receive.base, count: receive.rows * width),
            receiveCounts: receiveCounts.map { $0 * width }, receiveOffsets: receiveOffsets?.map { $0 * width })
        link.clock.wait(until: arrivals.max() ?? 0)
    }
}
