import Foundation

/// Small SVG charts that comet writes itself (no plotting service needed).
public enum Plots {
    /// One line of a `lineChart`: (x, y) points.
    public struct Series {
        public let name: String
        public let points: [(x: Double, y: Double)]
        public let color: String
        public init(name: String, points: [(x: Double, y: Double)], color: String) {
            (self.name, self.points, self.color) = (name, points, color)
        }
    }

    /// A horizontal reference line, e.g. the entropy floor.
    public struct Level {
        public let name: String
        public let y: Double
        public let color: String
        public init(name: String, y: Double, color: String) { (self.name, self.y, self.color) = (name, y, color) }
    }

    static let (width, height, left, right, top, bottom) = (720.0, 380.0, 60.0, 20.0, 40.0, 45.0)

    /// Lines over a shared x axis, with horizontal reference levels and a legend.
    public static func lineChart(title: String, xLabel: String, yLabel: String, series: [Series], levels: [Level] = []) -> String {
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) } + levels.map(\.y)
        let (x0, x1) = (xs.min() ?? 0, max(xs.max() ?? 1, (xs.min() ?? 0) + 1e-9))
        let (y0, y1) = (min(ys.min() ?? 0, 0), max(ys.max() ?? 1, 1e-9) * 1.05)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotWidth }
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * plotHeight }
        var body = frame(title: title, xLabel: xLabel, yLabel: yLabel)
        for tick in ticks(y0, y1) {
            body += line(left, py(tick), width - right, py(tick), "#e5e5e5") + text(left - 6, py(tick) + 4, format(tick), anchor: "end")
        }
        for tick in ticks(x0, x1) { body += text(px(tick), height - bottom + 16, format(tick), anchor: "middle") }
        for level in levels {
            body += line(left, py(level.y), width - right, py(level.y), level.color, dash: true)
        }
        for item in series where !item.points.isEmpty {
            let path = item.points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            body += #"<polyline fill="none" stroke-width="1.6" stroke=""# + item.color + #"" points=""# + path + "\"/>\n"
        }
        let legend = series.map { ($0.name, $0.color, false) } + levels.map { ($0.name + String(format: " (%.3f)", $0.y), $0.color, true) }
        for (index, entry) in legend.enumerated() {
            let y = top + 14 + Double(index) * 16
            body += line(width - right - 190, y - 4, width - right - 170, y - 4, entry.1, dash: entry.2) + text(width - right - 165, y, entry.0)
        }
        return document(body)
    }

    /// A heatmap of `values[row][column]` (e.g. per-expert load over steps), darker for larger.
    public static func heatmap(title: String, xLabel: String, yLabel: String, rowNames: [String], values: [[Double]], xOffset: Int = 1) -> String {
        let columns = values.map(\.count).max() ?? 0, rows = values.count
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let (cellWidth, cellHeight) = (plotWidth / Double(max(columns, 1)), plotHeight / Double(max(rows, 1)))
        let (low, high) = (values.flatMap { $0 }.min() ?? 0, values.flatMap { $0 }.max() ?? 1)
        var body = frame(title: title, xLabel: xLabel, yLabel: yLabel)
        for (r, row) in values.enumerated() {
            body += text(left - 6, top + (Double(r) + 0.5) * cellHeight + 4, rowNames[r], anchor: "end")
            for (c, value) in row.enumerated() {
                let shade = high > low ? (value - low) / (high - low) : 0.5
                let color = String(format: "rgb(%d,%d,%d)", Int(247 - 200 * shade), Int(251 - 160 * shade), Int(255 - 100 * shade))
                body += String(format: #"<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%@"/>"#,
                               left + Double(c) * cellWidth, top + Double(r) * cellHeight, cellWidth + 0.3, cellHeight + 0.3, color) + "\n"
            }
        }
        for tick in ticks(Double(xOffset), Double(columns - 1 + xOffset)) {
            body += text(left + (tick - Double(xOffset) + 0.5) * cellWidth, height - bottom + 16, format(tick), anchor: "middle")
        }
        body += text(width - right, top - 8, String(format: "light %.0f, dark %.0f", low, high), anchor: "end")
        return document(body)
    }

    static func frame(title: String, xLabel: String, yLabel: String) -> String {
        text(left, 24, title, size: 14, bold: true)
            + text(left + (width - left - right) / 2, height - 8, xLabel, anchor: "middle")
            + #"<text transform="translate(14,"# + format(top + (height - top - bottom) / 2) + #") rotate(-90)" text-anchor="middle" font-size="11">"#
            + escape(yLabel) + "</text>\n"
            + line(left, height - bottom, width - right, height - bottom, "#333333") + line(left, top, left, height - bottom, "#333333")
    }

    static func document(_ body: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        \(body)</svg>

        """
    }

    /// `values` without repeats, in first-seen order.
    public static func orderedUnique<T: Hashable>(_ values: [T]) -> [T] {
        var seen = Set<T>()
        return values.filter { seen.insert($0).inserted }
    }

    /// About five round ticks between `low` and `high`.
    static func ticks(_ low: Double, _ high: Double) -> [Double] {
        guard high > low else { return [low] }
        let step = roundStep(atLeast: (high - low) / 5)
        return stride(from: (low / step).rounded(.up) * step, through: high, by: step).map { $0 }
    }

    /// The smallest 1, 2 or 5 times a power of ten that is at least `raw`.
    static func roundStep(atLeast raw: Double) -> Double {
        let magnitude = pow(10, floor(log10(max(raw, 1e-12))))
        return [1, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e6 ? String(Int(value)) : String(format: "%.3g", value)
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ color: String, dash: Bool = false) -> String {
        String(format: #"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%@"%@/>"#, x1, y1, x2, y2, color,
               dash ? #" stroke-dasharray="5,4""# : "") + "\n"
    }

    static func text(_ x: Double, _ y: Double, _ content: String, anchor: String = "start", size: Int = 11, bold: Bool = false) -> String {
        String(format: #"<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%@"%@>%@</text>"#, x, y, size, anchor,
               bold ? #" font-weight="bold""# : "", escape(content)) + "\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

extension Plots {
    /// Bars grouped by x label, one bar per series in each group, with a reference level.
    public static func groupedBars(title: String, yLabel: String, groups: [String], series: [Series], level: Level? = nil) -> String {
        let values = series.flatMap { $0.points.map(\.y) } + (level.map { [$0.y] } ?? [])
        let top = max(values.max() ?? 1, 1e-9) * 1.1
        let plotWidth = width - left - right, plotHeight = height - Self.top - bottom
        let groupWidth = plotWidth / Double(max(groups.count, 1)), barWidth = groupWidth * 0.8 / Double(max(series.count, 1))
        func py(_ y: Double) -> Double { Self.top + (1 - y / top) * plotHeight }
        var body = frame(title: title, xLabel: "", yLabel: yLabel)
        for tick in ticks(0, top) {
            body += line(left, py(tick), width - right, py(tick), "#e5e5e5") + text(left - 6, py(tick) + 4, format(tick), anchor: "end")
        }
        for (g, group) in groups.enumerated() {
            body += text(left + (Double(g) + 0.5) * groupWidth, height - bottom + 16, group, anchor: "middle", size: 10)
            for (s, item) in series.enumerated() where g < item.points.count {
                let value = item.points[g].y
                let x = left + Double(g) * groupWidth + groupWidth * 0.1 + Double(s) * barWidth
                body += String(format: #"<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%@"><title>%@</title></rect>"#,
                               x, py(value), barWidth * 0.92, max(py(0) - py(value), 0), item.color,
                               escape("\(item.name): \(format(value))")) + "\n"
            }
        }
        if let level { body += line(left, py(level.y), width - right, py(level.y), level.color, dash: true) }
        for (index, item) in series.enumerated() {
            let y = Self.top + 14 + Double(index) * 16
            body += String(format: #"<rect x="%.1f" y="%.1f" width="10" height="10" fill="%@"/>"#, width - right - 190, y - 9, item.color)
                + text(width - right - 175, y, item.name)
        }
        return document(body)
    }
}
