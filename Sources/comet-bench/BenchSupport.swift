import Foundation

// What every benchmark shares: runs interleaved in rounds, medians and tables
// (JSON goes through `writeJSON`; the emulated link is in Calibration.swift).

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

/// The middle of `values` (the upper middle for an even count); nan for none.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}

/// `text` padded with spaces to `width` characters, for table columns.
func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

/// "<schedule> reaches X% of `name`'s speedup" for every comet variant among
/// `speedups`, each followed by its line in `after`, if any.
func printBoundShares(
    _ speedups: [(schedule: String, speedup: Double)], bound: Double, name: String = "the bound", after: [String: String] = [:]
) {
    for (schedule, speedup) in speedups where schedule.hasPrefix("comet") {
        print("\(schedule) reaches " + String(format: "%.0f%% of %@'s speedup", 100 * speedup / bound, name))
        if let line = after[schedule] { print(line) }
    }
}

/// The unit a report prints times in: ms, or us when its longest time is under 10 ms
/// (a modelled GPU at a shape this host can compute), so that figures keep their digits.
struct TimeUnit {
    /// "ms" or "us": two letters either way, so columns keep their widths.
    let name: String
    /// This unit's figures per millisecond.
    let perMillisecond: Double

    init(longestMilliseconds longest: Double) {
        (name, perMillisecond) = longest < 10 ? ("us", 1e3) : ("ms", 1)
    }

    /// `milliseconds` in this unit.
    func callAsFunction(_ milliseconds: Double) -> Double { milliseconds * perMillisecond }
}
