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

/// `rows` cut into consecutive tiles that start at `first` rows and double up to `size`.
public func rampedTiles(_ rows: Range<Int>, first: Int, size: Int) -> [Range<Int>] {
    var result: [Range<Int>] = []
    var start = rows.lowerBound, length = max(1, min(first, size))
    while start < rows.upperBound {
        result.append(start..<min(start + length, rows.upperBound))
        start += length
        length = min(2 * length, max(size, 1))
    }
    return result
}
