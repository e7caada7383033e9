import Foundation

extension GPUModel {
    /// Seconds a bf16 GEMM [m,k]x[k,n] (m, n, k positive) takes on this GPU, with all
    /// its SMs, launch not included.
    ///
    /// On H200: where (n, k) is a measured expert shape (h200_bf16_expert_gemm.csv), the
    /// measured times interpolated in m on log-log axes; beyond the measured m, the time at
    /// the nearest measured m scaled by the roofline's ratio between the two m; otherwise
    /// the roofline (`rooflineSeconds`). On another GPU: H200's time times the ratio of
    /// this GPU's roofline to H200's at that shape, that is the ratio of peak FLOP/s where
    /// the GEMM is compute-bound (all measured shapes from m = 512 on), of memory
    /// bandwidth where it is memory-bound, 1 at the latency floor.
    public func gemmSeconds(m: Int, n: Int, k: Int) -> Double {
        precondition(m > 0 && n > 0 && k > 0, "a GEMM of \(m)x\(n)x\(k)")
        let h200 = GEMMTable.shared.h200Seconds(m: m, n: n, k: k)
        return self == .h200 ? h200 : h200 * rooflineSeconds(m: m, n: n, k: k) / GPUModel.h200.rooflineSeconds(m: m, n: n, k: k)
    }

    /// Seconds one of the paper's expert GEMMs of `m` rows takes on this GPU.
    public func gemmSeconds(_ shape: ExpertShape, m: Int) -> Double {
        gemmSeconds(m: m, n: shape.n, k: shape.k)
    }

    /// Seconds the roofline gives a bf16 GEMM [m,k]x[k,n] on this GPU: the most of its
    /// FLOPs at `GEMMTable.efficiency` of peak, its bytes (A, B and C once each, 2 bytes
    /// an element) at the achieved memory bandwidth, and `GEMMTable.floorSeconds`.
    public func rooflineSeconds(m: Int, n: Int, k: Int) -> Double {
        let table = GEMMTable.shared
        return rooflineSeconds(m: m, n: n, k: k, efficiency: table.efficiency, floor: table.floorSeconds)
    }

    func rooflineSeconds(m: Int, n: Int, k: Int, efficiency: Double, floor: Double) -> Double {
        let (m, n, k) = (Double(m), Double(n), Double(k))
        let compute = 2 * m * n * k / (peakFLOPs * efficiency)
        let memory = 2 * (m * k + k * n + m * n) / achievedMemoryBandwidth
        return max(compute, memory, floor)
    }
}

/// The H200 expert-GEMM table by shape, and the roofline fitted to it.
struct GEMMTable: Sendable {
    static let shared = GEMMTable(MeasuredTables.expertGEMM)

    /// Per (n, k): seconds against m.
    let curves: [Shape: LogLogCurve]
    /// Fraction of peak FLOP/s the roofline's compute term runs at: the value in
    /// 0.50...1.00 (steps of 0.001) with the least squared log error over every row of
    /// the table; 0.63 for the table here (rms error of a row about 20%).
    let efficiency: Double
    /// Least seconds of any GEMM: the fastest measured row, 11.2 us (qwen2moe tp 4
    /// gemm1 m 1024), a kernel's latency.
    let floorSeconds: Double

    struct Shape: Hashable { let n: Int, k: Int }

    init(_ rows: [MeasuredTables.GEMM]) {
        curves = Dictionary(grouping: rows) { Shape(n: $0.shape.n, k: $0.shape.k) }
            .mapValues { LogLogCurve(points: $0.map { (x: Double($0.m), y: $0.seconds) }) }
        let floor = rows.map(\.seconds).min()!
        floorSeconds = floor
        efficiency = Self.fit(rows, floor: floor)
    }

    /// The roofline efficiency that fits `rows` best (least squared log error).
    static func fit(_ rows: [MeasuredTables.GEMM], floor: Double) -> Double {
        func error(_ efficiency: Double) -> Double {
            rows.reduce(0) { sum, row in
                let model = GPUModel.h200.rooflineSeconds(
                    m: row.m, n: row.shape.n, k: row.shape.k, efficiency: efficiency, floor: floor)
                return sum + pow(log(model / row.seconds), 2)
            }
        }
        return (500...1000).map { Double($0) / 1000 }.min { error($0) < error($1) }!
    }

    /// Seconds on H200 (see `GPUModel.gemmSeconds(m:n:k:)`).
    func h200Seconds(m: Int, n: Int, k: Int) -> Double {
        let h200 = GPUModel.h200
        guard let curve = curves[Shape(n: n, k: k)] else { return h200.rooflineSeconds(m: m, n: n, k: k) }
        let x = Double(m)
        guard !curve.range.contains(x) else { return curve.at(x) }
        let edge = Int(x < curve.range.lowerBound ? curve.range.lowerBound : curve.range.upperBound)
        return curve.at(Double(edge)) * h200.rooflineSeconds(m: m, n: n, k: k) / h200.rooflineSeconds(m: edge, n: n, k: k)
    }
}
