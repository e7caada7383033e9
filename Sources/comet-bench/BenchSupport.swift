import ArgumentParser
import CometCore
import CometMoE
import CometMPI
import Foundation

// What every benchmark shares: runs interleaved in rounds, the emulated link
// calibrated in the same run, medians and tables (JSON goes through `writeJSON`).

/// Runs `measure(index)` for `count` variants in rounds, `warmup` rounds first and
/// then `rounds` kept, rotating the order each round so that no variant always
/// runs first; returns each variant's kept samples.
func interleavedRounds<Sample>(
    _ count: Int, warmup: Int, rounds: Int, _ measure: (_ index: Int) throws -> Sample
) rethrows -> [[Sample]] {
    var samples = [[Sample]](repeating: [], count: count)
    for round in 0..<(warmup + rounds) {
        for offset in 0..<count {
            let index = (offset + round) % count
            let sample = try measure(index)
            if round >= warmup { samples[index].append(sample) }
        }
    }
    return samples
}

/// The `--link` choices.
enum LinkChoice: String, ExpressibleByArgument, CaseIterable {
    case native, balanced, h800, l20
}

/// What the emulated links are derived from: sequential's expert GEMMs on a native
/// link, measured in this run on every rank (the slowest rank counts).
struct Calibration: Codable {
    /// GEMM seconds that the balanced link's exchanges take together.
    let gemmSeconds: Double
    /// Bytes of the busiest rank pair's exchange (either direction), the most of any layer.
    let busiestPairBytes: Int
    /// One rank's GEMM FLOP/s.
    let rankFLOPs: Double
    /// Exchanges within `gemmSeconds`: a dispatch and a combine per pass, forward and
    /// backward, in every MoE layer measured.
    let exchanges: Int

    /// Runs `sample` (a measurement of the GEMM seconds, FLOPs and the busiest pair's
    /// bytes, on this rank) three times and keeps the median. Collective.
    static func measure(
        _ world: Communicator, exchanges: Int, _ sample: () throws -> (gemmSeconds: Double, flops: Double, busiestPairBytes: Int)
    ) throws -> Calibration {
        var seconds: [Double] = [], flops = 0.0, bytes = 0
        for _ in 0..<3 {
            let measured = try sample()
            seconds.append(try world.allReduce(measured.gemmSeconds, .max))
            (flops, bytes) = (measured.flops, measured.busiestPairBytes)
        }
        let gemmSeconds = median(seconds)
        return Calibration(gemmSeconds: gemmSeconds, busiestPairBytes: Int(try world.allReduce(Int64(bytes), .max)),
                           rankFLOPs: try world.allReduce(flops, .max) / gemmSeconds, exchanges: exchanges)
    }

    /// The link `choice` names: balanced so that the busiest pair's exchanges take as
    /// long as the GEMMs; the GPU presets scaled to this machine's GEMM speed.
    func link(_ choice: LinkChoice) -> LinkModel {
        switch choice {
        case .native: .native
        case .balanced: .balanced(gemmSeconds: gemmSeconds, busiestPairBytes: busiestPairBytes, exchanges: exchanges)
        case .h800: DevicePreset.h800.link(rankFLOPs: rankFLOPs)
        case .l20: DevicePreset.l20.link(rankFLOPs: rankFLOPs)
        }
    }
}

/// The middle of `values` (the upper middle for an even count); nan for none.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}

/// `text` padded with spaces to `width` characters, for table columns.
func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

/// "<schedule> reaches X% of the bound's speedup" for every comet variant among `speedups`.
func printBoundShares(_ speedups: [(schedule: String, speedup: Double)], bound: Double) {
    for (schedule, speedup) in speedups where schedule.hasPrefix("comet") {
        print("\(schedule) reaches " + String(format: "%.0f%% of the bound's speedup", 100 * speedup / bound))
    }
}
