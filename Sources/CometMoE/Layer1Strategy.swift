import CometCore

/// How comet cuts layer1 (GEMM2 and the combine): the part in which `comet`
/// (`ColumnBlocks`, the paper's) and `comet-rows` (`RowPushes`) differ. One per
/// pass, shared by its threads; `CometSchedule.Layer1` chooses it.
protocol Layer1Strategy: Sendable {
    /// A communicator thread's layer1 work, with its own state.
    func communicator(index: Int) -> any Layer1Communicator
    /// On a GEMM thread, right after layer0 of `rows`.
    func computed(_ rows: LandedRows, thread: Int) throws
    /// On a GEMM thread, once every row's layer0 is done.
    func afterLayer0(thread: Int) throws
}

/// One communicator thread's layer1 work: some between its pulls, the rest after
/// them. Each part does nothing unless a strategy says otherwise.
protocol Layer1Communicator {
    /// Nothing left to do between pulls.
    var isDone: Bool { get }
    /// `source` has published this phase and this thread pulls nothing from it.
    mutating func nothingToPull(from source: Int) throws
    /// Between pulls: does whatever is ready (`pullsDone`: this thread has pulled all it will).
    mutating func step(pullsDone: Bool, thread: Int) throws -> Layer1Step
    /// Once this thread's pulls are done and `isDone` holds.
    mutating func finish(thread: Int) throws
}

extension Layer1Communicator {
    var isDone: Bool { true }
    func nothingToPull(from source: Int) {}
    func step(pullsDone: Bool, thread: Int) -> Layer1Step { Layer1Step(progress: false, waitingFor: "nothing") }
    func finish(thread: Int) {}
}

/// What a communicator's step did, and what it waits for if nothing.
struct Layer1Step {
    var progress: Bool
    /// When to wake up at the latest, on the clock.
    var wakeAt = Double.infinity
    /// It waits for other ranks' news whose time is not known yet.
    var waitsForPeers = false
    /// The time of the earliest event of this rank's GEMM threads it waits for (nil: none yet).
    var nextLocal: @Sendable () -> Double? = { nil }
    /// For the timeline and the deadline report: "rows to compute", ...
    var waitingFor: String
}

