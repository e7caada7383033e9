import CometKernels
import XCTest

final class RandomTests: XCTestCase {
    /// Skipping n numbers lands where n draws do (what a time-only run's `randomize` does).
    func testSkipMovesOnAsDrawing() {
        for count in [0, 1, 7, 1000] {
            var drawn = SeededGenerator(seed: 42), skipped = SeededGenerator(seed: 42)
            for _ in 0..<count { _ = drawn.next() }
            skipped.skip(count)
            XCTAssertEqual(drawn.next(), skipped.next(), "after \(count)")
        }
    }
}
