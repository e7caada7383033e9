import Synchronization

/// Which layer0 tiles' rows (comet-rows) or layer1 blocks (comet) the GEMM threads
/// have finished, and when, on the rank's clock: the communicator threads push
/// them home once they see them.
final class TaskMarks: Sendable {
    private let marks: Mutex<[Double?]>
    init(count: Int) { marks = Mutex([Double?](repeating: nil, count: count)) }
    func mark(_ tasks: [Int], at time: Double) { marks.withLock { for task in tasks { $0[task] = time } } }
    /// Those of `tasks` marked by `time`.
    func marked(among tasks: [Int], by time: Double) -> Set<Int> {
        marks.withLock { marks in Set(tasks.filter { marks[$0].map { $0 <= time } ?? false }) }
    }
    /// The earliest mark among `tasks`; nil if none is marked.
    func earliest(among tasks: [Int]) -> Double? { marks.withLock { marks in tasks.compactMap { marks[$0] }.min() } }
}
