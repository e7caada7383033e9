import CometMPI
import Synchronization

/// Hands out task numbers 0..<count in order to whichever thread asks first.
public final class TaskCounter: Sendable {
    private let next = Atomic<Int>(0)
    public let count: Int

    public init(count: Int) { self.count = count }

    /// The next task, or nil when all are taken.
    public func take() -> Int? {
        let task = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return task < count ? task : nil
    }
}

/// Runs `body(task, thread)` for tasks 0..<count on `threads` threads, in task order.
public func parallelFor(threads: Int, count: Int, _ body: @escaping @Sendable (_ task: Int, _ thread: Int) throws -> Void) throws {
    guard count > 0 else { return }
    let tasks = TaskCounter(count: count)
    try runThreads(min(threads, count)) { thread in
        while let task = tasks.take() { try body(task, thread) }
    }
}

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
