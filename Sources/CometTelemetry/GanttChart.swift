import CometCore
import Foundation

/// A Gantt timeline as SVG, written by comet itself: one section per schedule
/// (its events shifted to start at 0, so schedules share one time axis), one row
/// per (rank, thread), communication and GEMM in different colours.
public enum GanttChart {
    static let colors = ["gemm": "#dd8452", "comm": "#4c72b0", "local": "#8c8c8c", "dense": "#55a868", "wait": "#e4e4e4"]
    static let rowHeight = 9.0, sectionGap = 26.0, left = 150.0, width = 900.0, top = 40.0

    /// The SVG for `events` (from `ChromeTrace.gather`, timed on `clock`), grouped by
    /// the schedule named in each event's phase ("comet forward" -> "comet"); the
    /// title and the caption under the time axis name the clock.
    public static func svg(_ events: [ChromeTrace.Event], title: String, clock: any Clock) -> String {
        // Baseline first, comet last.
        let rank = { (name: String) in ["sequential", "chunked", "comet"].firstIndex { name.hasPrefix($0) } ?? 3 }
        let schedules = Plots.orderedUnique(events.map { schedule(of: $0) }).sorted { (rank($0), $0) < (rank($1), $1) }
        let sections = schedules.map { name in
            let own = events.filter { schedule(of: $0) == name }
            let start = own.map(\.ts).min() ?? 0
            return (name: name, events: own.map { $0.shifted(by: -start) })
        }
        let span = max(sections.flatMap { $0.events.map { $0.ts + ($0.dur ?? 0) } }.max() ?? 1, 1)
        let scale = width / span
        var y = top
        var body = ""
        for section in sections {
            body += Plots.text(8, y + 12, section.name, bold: true)
            y += 18
            let rows = Plots.orderedUnique(section.events.map { RowKey(rank: $0.pid, thread: $0.tid) }).sorted()
            for row in rows {
                let own = section.events.filter { $0.pid == row.rank && $0.tid == row.thread }
                body += Plots.text(8, y + rowHeight - 1, "rank \(row.rank) \(ChromeTrace.trackName(thread: row.thread, own))", size: 8)
                for event in own {
                    let x = left + event.ts * scale, w = max((event.dur ?? 0) * scale, 0.5)
                    body += String(format: #"<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%@" fill-opacity="%@"><title>%@</title></rect>"#,
                                   x, y, w, rowHeight - 1.5, colors[event.kind] ?? "#000000", event.kind == "comm" ? "0.45" : "0.9",
                                   Plots.escape("\(event.name) (\(String(format: "%.2f", (event.dur ?? 0) / 1e3)) ms)"))
                    body += "\n"
                }
                y += rowHeight
            }
            y += sectionGap - 18
        }
        let height = y + 40
        var axis = ""
        let tick = Plots.roundStep(atLeast: span / 1e3 / 8)
        var t = 0.0
        while t * 1e3 <= span {
            let x = left + t * 1e3 * scale
            axis += String(format: ##"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>"##, x, top, x, y)
            axis += Plots.text(x - 8, y + 14, String(format: "%g ms", t), size: 9)
            t += tick
        }
        axis += Plots.text(left, y + 30, "ms of \(clock.timeName) (\(clock.meaning))", size: 9)
        let legend = colors.sorted { $0.key < $1.key }.enumerated().map { index, entry in
            String(format: #"<rect x="%.0f" y="27" width="10" height="10" fill="%@"/>"#, left + 420 + Double(index) * 95, entry.value)
                + Plots.text(left + 434 + Double(index) * 95, 36, ["gemm": "expert GEMM", "comm": "communication", "local": "reduce, pack", "dense": "dense layers", "wait": "waiting"][entry.key]!, size: 10)
        }.joined()
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(left + width + 20))" height="\(Int(height))" font-family="sans-serif">
            <rect width="100%" height="100%" fill="white"/>
            \(Plots.text(8, 22, "\(title) (\(clock.timeName))", size: 13, bold: true))\(legend)
            \(axis)
            \(body)</svg>

            """
    }

    struct RowKey: Hashable, Comparable {
        let rank: Int, thread: Int
        static func < (a: RowKey, b: RowKey) -> Bool { (a.rank, a.thread) < (b.rank, b.thread) }
    }

    static func schedule(of event: ChromeTrace.Event) -> String {
        let words = event.phase.split(separator: " ")
        return words.dropLast().joined(separator: " ")
    }


}
