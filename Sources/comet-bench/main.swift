import ArgumentParser
import CometKernels
import CometLaunch
import CometMPI
import Foundation

/// `comet-bench`: figures measured side by side in one run.
struct CometBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet-bench",
        abstract: "Measure comet's building blocks and schedules side by side in one run.",
        subcommands: [LayerBench.self, SweepBench.self, TuneBench.self, E2EBench.self, PaperBench.self, GEMMBench.self, WindowBench.self])
}

Launch.main(CometBench.self)
