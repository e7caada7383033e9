@testable import CometMoE
import XCTest

final class RowTilesTests: XCTestCase {
    func testTilesCoverTheRowsInOrder() {
        XCTAssertEqual(tiles(3..<13, size: 4), [3..<7, 7..<11, 11..<13])
        XCTAssertEqual(tiles(0..<0, size: 4), [])
        XCTAssertEqual(tiles(0..<3, size: 0), [0..<1, 1..<2, 2..<3])
    }

    /// Ramps double from `first` up to `size` and shrink the same way at the end;
    /// what is left over sits just after the middle.
    func testRampsGrowAndShrink() {
        let ramp = rampedTiles(0..<200, first: 16, size: 64)
        XCTAssertEqual(ramp.map(\.count), [16, 32, 64, 40, 32, 16])
        assertCovers(ramp, 0..<200)
        XCTAssertEqual(rampedTiles(0..<96, first: 8, size: 32).map(\.count), [8, 16, 32, 16, 16, 8])
    }

    /// Exact cuts for small cases, including fewer rows than the first tile.
    func testRampLengths() {
        XCTAssertEqual(rampedTiles(0..<10, first: 4, size: 16).map(\.count), [4, 2, 4])
        XCTAssertEqual(rampedTiles(5..<8, first: 4, size: 16), [5..<8])
        XCTAssertEqual(rampedTiles(0..<48, first: 4, size: 8).map(\.count), [4, 8, 8, 8, 8, 8, 4])
        XCTAssertEqual(rampedTiles(0..<0, first: 4, size: 8), [])
        assertCovers(rampedTiles(0..<1000, first: 1, size: 7), 0..<1000)
    }

    /// Layer0's pull order on rank 1 of 4, 2 experts per rank, uneven routing.
    func testRowTileOrder() {
        let plan = Self.plan(rank: 1, ranks: 4, experts: 8, tokens: 40)
        let order = [1, 2, 3, 0]
        let tileRows = 8
        let tasks = rowTileOrder(plan, order: order, tileRows: tileRows)
        // Every received row once, each tile inside one (source, expert) segment.
        assertCovers(tasks.map(\.rows).sorted { $0.lowerBound < $1.lowerBound }, 0..<plan.receivedRows)
        for tile in tasks {
            XCTAssertTrue(plan.expertRows(tile.expert).contains(tile.rows.lowerBound))
            XCTAssertLessThanOrEqual(tile.rows.upperBound, plan.expertRows(tile.expert).upperBound)
            let segment = plan.sourceOffset(source: tile.source, expert: tile.expert)
                ..< plan.sourceOffset(source: tile.source, expert: tile.expert) + plan.receiveSegment(source: tile.source, expert: tile.expert).count
            XCTAssertTrue(segment.contains(tile.sourceRow) && tile.sourceRow + tile.rows.count <= segment.upperBound, "\(tile)")
        }
        // Own rank's tiles first, in full tiles; then the others round-robin, rank+1 first, ramping up from a quarter.
        let own = tasks.prefix { $0.source == 1 }
        XCTAssertEqual(own.reduce(0) { $0 + $1.rows.count }, plan.receiveCount(source: 1))
        XCTAssertTrue(tasks.dropFirst(own.count).allSatisfy { $0.source != 1 })
        XCTAssertEqual(tasks[own.count].source, 2)
        XCTAssertEqual(tasks[own.count].rows.count, min(tileRows / 4, plan.receiveCount(source: 2)))
        XCTAssertTrue(tasks.allSatisfy { $0.rows.count <= tileRows })
        // Each expert's rows are laid out in pull order, so tiles that land together are adjacent.
        for expert in 0..<plan.expertsPerRank {
            let mine = tasks.filter { $0.expert == expert }
            XCTAssertEqual(mine.map(\.rows.lowerBound), mine.map(\.rows.lowerBound).sorted())
            XCTAssertEqual(zip(mine, mine.dropFirst()).filter { $0.rows.upperBound != $1.rows.lowerBound }.count, 0)
        }
    }

    /// A source with no rows for this rank gets no tiles; a lone rank pulls only from itself.
    func testSourcesWithoutRows() {
        let lone = Self.plan(rank: 0, ranks: 1, experts: 2, tokens: 9)
        let tasks = rowTileOrder(lone, order: [0], tileRows: 4)
        XCTAssertEqual(tasks.map(\.rows.count).reduce(0, +), 18)
        XCTAssertTrue(tasks.allSatisfy { $0.source == 0 })
        let empty = Self.plan(rank: 0, ranks: 2, experts: 2, tokens: 0)
        XCTAssertTrue(rowTileOrder(empty, order: [0, 1], tileRows: 4).isEmpty)
    }

    /// The plan of `rank` when every rank routes its `tokens` alike (top-2, skewed
    /// towards low experts), so that the count exchange can be played locally.
    static func plan(rank: Int, ranks: Int, experts: Int, tokens: Int) -> RoutingPlan {
        let choices = (0..<tokens).flatMap { token in [token * token % experts, (token + 1 + token % 3) % experts] }
        return RoutingPlan(choices: choices, tokens: tokens, topK: 2, experts: experts, ranks: ranks, rank: rank, tensorParallel: 1) {
            outgoing in
            // Every rank sends alike, so what reaches `rank` from each source is the block it sends to itself.
            let block = outgoing.count / ranks
            return (0..<ranks).flatMap { _ in outgoing[(rank * block)..<((rank + 1) * block)] }
        }
    }

    private func assertCovers(_ parts: [Range<Int>], _ whole: Range<Int>, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(parts.first?.lowerBound ?? whole.lowerBound, whole.lowerBound, file: file, line: line)
        XCTAssertEqual(parts.last?.upperBound ?? whole.upperBound, whole.upperBound, file: file, line: line)
        XCTAssertTrue(zip(parts, parts.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "\(parts)", file: file, line: line)
        XCTAssertTrue(parts.allSatisfy { !$0.isEmpty }, file: file, line: line)
    }
}

final class WindowLayoutTests: XCTestCase {
    /// Flags are distinct and within the count; data regions do not overlap and fit the bytes.
    func testFlagsAndRegionsDoNotOverlap() {
        let layout = WindowLayout(capacity: 10, modelWidth: 6, ranks: 4, tensorParallel: 2, blocks: 3)
        let flags = (0..<4).map(layout.readyFlag) + [layout.pulledFlag] + (0..<3).map(layout.arrivedFlag)
        XCTAssertEqual(Set(flags).count, flags.count)
        XCTAssertEqual(flags.sorted(), Array(0..<layout.flagCount))

        let row = layout.rowBytes
        XCTAssertEqual(row, 24)
        XCTAssertEqual(layout.sendOffset(row: 9) + row, 10 * row)  // send rows [0, capacity)
        XCTAssertEqual(layout.returnOffset(region: 0, row: 0, column: 0), 10 * row)  // then TP regions
        XCTAssertEqual(layout.returnOffset(region: 1, row: 0, column: 0), 20 * row)
        XCTAssertEqual(layout.returnOffset(region: 1, row: 9, column: 5), 29 * row + 5 * 4)
        XCTAssertEqual(layout.stampOffset(block: 0, source: 0), 30 * row)  // then stamps
        XCTAssertEqual(layout.readyStampOffset(source: 0), layout.stampOffset(block: 2, source: 3) + 8)  // then publications
        XCTAssertEqual(layout.readyStampOffset(source: 3) + 8, layout.byteCount)
        let stamps = (0..<3).flatMap { block in (0..<4).map { layout.stampOffset(block: block, source: $0) } }
            + (0..<4).map(layout.readyStampOffset)
        XCTAssertEqual(Set(stamps).count, 16)
    }

    /// The views see the regions the offsets name.
    func testViews() {
        let layout = WindowLayout(capacity: 3, modelWidth: 2, ranks: 2, tensorParallel: 2, blocks: 1)
        let data = UnsafeMutableRawPointer.allocate(byteCount: layout.byteCount, alignment: 64)
        defer { data.deallocate() }
        let send = layout.sendRows(data), returned = layout.returnRows(data)
        XCTAssertEqual([send.rows, send.columns], [3, 2])
        XCTAssertEqual([returned.rows, returned.columns], [6, 2])
        XCTAssertEqual(UnsafeMutableRawPointer(returned.base) - data, layout.returnOffset(region: 0, row: 0, column: 0))
        XCTAssertEqual(UnsafeMutableRawPointer(returned.base + 3 * 2) - data, layout.returnOffset(region: 1, row: 0, column: 0))
    }
}
