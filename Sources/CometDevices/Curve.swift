import Foundation

/// A piecewise-linear function through measured points: exact at each point, linear
/// between neighbours, constant beyond the ends.
struct Curve: Sendable {
    /// Abscissas, ascending and distinct, and the ordinates at them.
    let xs: [Double], ys: [Double]

    /// The curve through `points` (at least one); points at the same x are averaged.
    init(points: [(x: Double, y: Double)]) {
        precondition(!points.isEmpty, "a curve needs a point")
        var xs: [Double] = [], ys: [Double] = [], counts: [Double] = []
        for point in points.sorted(by: { $0.x < $1.x }) {
            if xs.last == point.x {
                ys[ys.count - 1] += point.y
                counts[counts.count - 1] += 1
            } else {
                (xs, ys, counts) = (xs + [point.x], ys + [point.y], counts + [1])
            }
        }
        self.xs = xs
        self.ys = zip(ys, counts).map { $0 / $1 }
    }

    var first: Double { xs[0] }
    var last: Double { xs[xs.count - 1] }

    /// The value at `x`, clamped to the end values outside the points.
    func at(_ x: Double) -> Double {
        guard x > first else { return ys[0] }
        guard x < last else { return ys[ys.count - 1] }
        let upper = xs.firstIndex { $0 >= x }!
        guard xs[upper] > x else { return ys[upper] }
        let lower = upper - 1
        let t = (x - xs[lower]) / (xs[upper] - xs[lower])
        return ys[lower] + (ys[upper] - ys[lower]) * t
    }
}

/// A positive function interpolated on log-log axes: a power law between neighbours.
struct LogLogCurve: Sendable {
    private let curve: Curve
    /// Lowest and highest x measured.
    let range: ClosedRange<Double>

    /// The curve through `points`, all coordinates positive.
    init(points: [(x: Double, y: Double)]) {
        curve = Curve(points: points.map { (x: log($0.x), y: log($0.y)) })
        range = points.map(\.x).min()!...points.map(\.x).max()!
    }

    /// The value at `x` (positive), clamped to the end values outside the range.
    func at(_ x: Double) -> Double { exp(curve.at(log(x))) }
}
