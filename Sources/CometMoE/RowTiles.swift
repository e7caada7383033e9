// How comet cuts rows into tiles: plain and ramped runs of rows, and layer0's
// tiles in the order in which they are pulled.

/// `rows` cut into consecutive tiles of at most `size` rows.
public func tiles(_ rows: Range<Int>, size: Int) -> [Range<Int>] {
    stride(from: rows.lowerBound, to: rows.upperBound, by: max(size, 1)).map { $0..<min($0 + max(size, 1), rows.upperBound) }
}

/// `rows` cut into consecutive tiles that start at `first` rows, double up to
/// `size`, and shrink the same way towards the end: 16, 32, 64, ..., 64, 32, 16.
public func rampedTiles(_ rows: Range<Int>, first: Int, size: Int) -> [Range<Int>] {
    let size = max(size, 1)
    var front: [Int] = [], back: [Int] = []
    var left = rows.count, length = max(1, min(first, size))
    while left > 0 {
        front.append(min(length, left))
        left -= front.last!
        if left == 0 { break }
        back.append(min(length, left))
        left -= back.last!
        length = min(2 * length, size)
    }
    var start = rows.lowerBound
    return (front + back.reversed()).map { length in
        defer { start += length }
        return start..<start + length
    }
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
