import CometCore

/// How reports say which clock their figures are on.
extension Clock {
    /// "device time" or "wall time".
    public var timeName: String { "\(name) time" }

    /// What the clock's times mean for a reader of the figures.
    public var meaning: String {
        isPerRank
            ? "each rank's threads are engines with their own clocks; host cores do not matter"
            : "this host's; every rank's threads share its cores"
    }

    /// The line a report prints before its figures: "clock: device (...)".
    public var reportLine: String { "clock: \(name) (\(meaning))" }
}
