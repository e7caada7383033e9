import CometCore
import CometKernels
import CometMPI

/// Comet's symmetric buffer and the protocol on it (one-sided communication on
/// symmetric buffers, the third idea in the paper's design): each rank
/// publishes its rows in send order and tells every rank; peers pull them with
/// one-sided gets and count their pulls on the source; expert ranks push results
/// straight into the home ranks' windows and announce each block's arrival time.
///
/// Flags are counters that only grow: a phase (one layer call) waits for values
/// that count the phases so far, so no flag is ever reset. `publish` starts the
/// next phase and returns its number, which the phase's threads pass to the other
/// methods; those may be called from any thread.
///
/// Time travels with the data: a rank's publication carries the time it published
/// at, and each push the time it arrives at, on the senders' clocks.
final class CometWindow: @unchecked Sendable {
    let window: SymmetricWindow
    let layout: WindowLayout
    /// Pushes carry arrival stamps (the link is emulated, or time is per rank); else
    /// a block has come home as soon as every rank's push is in.
    let stamped: Bool
    /// Layer calls so far (phases).
    private var phase = 0

    /// Allocates the window on `group`. Collective.
    init(layout: WindowLayout, group: Communicator, stamped: Bool, forcePutGet: Bool) throws {
        self.layout = layout
        self.stamped = stamped
        window = try SymmetricWindow(communicator: group, byteCount: layout.byteCount, flagCount: layout.flagCount,
                                     forcePutGet: forcePutGet, zeroingData: !ModelledKernels.isTimeOnly)
    }

    var me: Int { window.communicator.rank }
    var ranks: Int { window.communicator.size }
    var sendRows: MatrixView { layout.sendRows(window.localData) }
    var returnRows: MatrixView { layout.returnRows(window.localData) }
    /// Rung whenever a flag of this rank's is raised (direct path; nil on put/get).
    var doorbell: Doorbell? { window.localDoorbell }

    /// Starts a phase and returns its number: waits until every rank has pulled what
    /// this rank published last time, fills `sendRows` with `fill` (recorded on
    /// `timeline`), and tells every rank it is ready, and when. On the rank's main thread.
    func publish(rows: Int, timeline: Timeline, _ fill: (MatrixView) -> Void) throws -> Int {
        precondition(rows <= layout.capacity, "more tokens than the layer was built for")
        try window.waitForFlag(layout.pulledFlag, toReach: UInt64(phase * ranks), "every rank's pull of phase \(phase) rows from here")
        phase += 1
        timeline.record(.local, thread: 0, "pack") { fill(sendRows) }
        var time = timeline.clock.now()
        for rank in 0..<ranks {
            try window.put(&time, byteCount: MemoryLayout<Double>.size, toRank: rank, offset: layout.readyStampOffset(source: me))
            try window.setFlag(layout.readyFlag(source: me), to: UInt64(phase), onRank: rank)
        }
        return phase
    }

    /// When `source` published the rows of `phase`, on its clock; nil until it has.
    /// Polled while waiting for peers: device time does not charge its CPU.
    func publishTime(_ source: Int, phase: Int) throws -> Double? {
        try chargeAsWaiting {
            guard try window.flag(layout.readyFlag(source: source)) >= UInt64(phase) else { return nil }
            return window.localData.load(fromByteOffset: layout.readyStampOffset(source: source), as: Double.self)
        }
    }

    /// Copies `tile`'s rows from its source's window into `received`.
    func pull(_ tile: RowTile, into received: MatrixView) throws {
        try window.get(into: received.base + tile.rows.lowerBound * received.rowStride, byteCount: tile.rows.count * layout.rowBytes,
                       fromRank: tile.source, offset: layout.sendOffset(row: tile.sourceRow))
    }

    /// Tells `source` that this rank has pulled all it needs of this phase's rows.
    func finishedPulling(from source: Int) throws {
        try window.addToFlag(layout.pulledFlag, 1, onRank: source)
    }

    /// Writes `columns` of `results`' rows of `tiles` (all from `home`) into `home`'s
    /// return rows, in the region of this rank's TP index `region`.
    func push(_ results: MatrixView, _ tiles: [RowTile], to home: Int, region: Int, columns: Range<Int>) throws {
        for tile in tiles {
            try window.putRows(
                results.base + tile.rows.lowerBound * results.rowStride + columns.lowerBound,
                rows: tile.rows.count, rowBytes: columns.count * MemoryLayout<Float>.stride,
                sourceStride: results.rowStride * MemoryLayout<Float>.stride, toRank: home,
                offset: layout.returnOffset(region: region, row: tile.sourceRow, column: columns.lowerBound),
                targetStride: layout.rowBytes)
        }
    }

    /// Tells `home` that this rank's push of `block` is complete and arrives at `arrival`.
    func announce(block: Int, to home: Int, arrival: Double) throws {
        var arrival = arrival
        try window.put(&arrival, byteCount: MemoryLayout<Double>.size, toRank: home, offset: layout.stampOffset(block: block, source: me))
        try window.addToFlag(layout.arrivedFlag(block: block), 1, onRank: home)
    }

    /// When every rank's push of `block` in `phase` is here, by the arrival times they
    /// announced (0 once all are in, unstamped); infinity while some are missing.
    /// Polled while waiting for peers: device time does not charge its CPU.
    func arrivalTime(block: Int, phase: Int) throws -> Double {
        try chargeAsWaiting {
            guard try window.flag(layout.arrivedFlag(block: block)) >= UInt64(phase * ranks) else { return .infinity }
            guard stamped else { return 0 }
            return (0..<ranks).map {
                window.localData.load(fromByteOffset: layout.stampOffset(block: block, source: $0), as: Double.self)
            }.max() ?? 0
        }
    }

    /// Frees the window. Collective.
    func free() throws { try window.free() }
}

/// Where things are in a rank's window: flags first (`SymmetricWindow`), then
/// data: sendRows [capacity, N], returnRows [TP x capacity, N], arrival stamps
/// [blocks, W], publication stamps [W].
struct WindowLayout: Sendable, Equatable {
    /// Rows each region holds: tokens per rank x top-k.
    let capacity: Int
    let modelWidth: Int
    let ranks: Int
    let tensorParallel: Int
    /// Layer1 blocks whose pushes are flagged and stamped (1 when layer1 is cut by rows).
    let blocks: Int

    var rowBytes: Int { modelWidth * MemoryLayout<Float>.stride }
    private var dataRows: Int { (1 + tensorParallel) * capacity }
    var byteCount: Int { dataRows * rowBytes + (blocks + 1) * ranks * MemoryLayout<Double>.stride }

    /// ready[source] (0..<W): the phase whose rows `source` has published.
    func readyFlag(source: Int) -> Int { source }
    /// pulled (W): ranks that have pulled this rank's rows, over all phases.
    var pulledFlag: Int { ranks }
    /// arrived[block] (W + 1 + block): ranks that have pushed `block` here, over all phases.
    func arrivedFlag(block: Int) -> Int { ranks + 1 + block }
    var flagCount: Int { ranks + 1 + blocks }

    func sendOffset(row: Int) -> Int { row * rowBytes }
    /// Row `row` of TP index `region`'s partial results, from column `column`.
    func returnOffset(region: Int, row: Int, column: Int) -> Int {
        ((1 + region) * capacity + row) * rowBytes + column * MemoryLayout<Float>.stride
    }
    /// When `source`'s push of `block` arrives here, on the link model's clock.
    func stampOffset(block: Int, source: Int) -> Int {
        dataRows * rowBytes + (block * ranks + source) * MemoryLayout<Double>.stride
    }
    /// When `source` published its rows of the latest phase, on its clock.
    func readyStampOffset(source: Int) -> Int { stampOffset(block: blocks, source: source) }

    func sendRows(_ data: UnsafeMutableRawPointer) -> MatrixView {
        MatrixView(base: data.assumingMemoryBound(to: Float.self), rows: capacity, columns: modelWidth)
    }
    func returnRows(_ data: UnsafeMutableRawPointer) -> MatrixView {
        MatrixView(base: (data + returnOffset(region: 0, row: 0, column: 0)).assumingMemoryBound(to: Float.self),
                   rows: tensorParallel * capacity, columns: modelWidth)
    }
}
