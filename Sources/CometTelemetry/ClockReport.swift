import CometCore

/// How reports say which clock their figures are on.
extension Clock {
    /// "device time" or "wall time".
    public var timeName: String { "\(name) time" }

    /// What the clock's times mean for a reader of the figures.
    public var meaning: String {
        guard isPerRank else { return "this host's; every rank's threads share its cores" }
        let engines = "each rank's threads are engines with their own clocks"
        return (self as? DeviceClock)?.hostCPU == .ignored
            ? engines + ", advanced by modelled kernels and the link alone (host CPU ignored): host cores and load do not matter"
            : engines + ", advanced by their CPU time (GEMMs by sampled costs): host cores do not matter"
    }

    /// The line a report prints before its figures: "clock: device (...)".
    public var reportLine: String { "clock: \(name) (\(meaning))" }
}
