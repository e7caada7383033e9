import Foundation

extension GPUModel {
    /// Seconds a bf16 GEMM [m,k]x[k,n] takes while `heldSMs` of this GPU's SMs are held
    /// by other thread blocks (communication): `gemmSeconds(m:n:k:)` times
    /// `smSplitFactor`. Infinite when no SM is left.
    public func gemmSeconds(m: Int, n: Int, k: Int, heldSMs: Int) -> Double {
        gemmSeconds(m: m, n: n, k: k) * smSplitFactor(m: m, n: n, k: k, heldSMs: heldSMs)
    }

    /// How many times slower a GEMM [m,k]x[k,n] runs while `heldSMs` (0...sms) of this
    /// GPU's SMs are held, from h200_gemm_sm_split.csv: 1 with none held, infinite with
    /// all held. Not proportional to the SMs left: cuBLAS sizes its grid for all SMs, so
    /// small GEMMs lose 2-3x as soon as 8 are held (wave quantisation), nor monotone in
    /// `heldSMs` (measured: mixtral m 1024 gemm1 is 2.0x slower with 8 held, 1.5x with 32).
    ///
    /// Held SMs count as the same fraction of H200's 132 (`heldSMs * 132 / sms`). Each
    /// measured GEMM's slowdown (time with held SMs over time with none, same table) is
    /// linear between measured held counts and, beyond the last, grows as the SMs left
    /// shrink. A GEMM of a measured (n, k) interpolates between that shape's measured m,
    /// on log axes, clamped beyond them; another GEMM between the measured GEMMs nearest
    /// in FLOPs (gemm1 and gemm2 of a model and m, equal in FLOPs, averaged).
    public func smSplitFactor(m: Int, n: Int, k: Int, heldSMs: Int) -> Double {
        precondition(heldSMs >= 0, "held SMs \(heldSMs)")
        guard heldSMs > 0 else { return 1 }
        guard heldSMs < sms else { return .infinity }
        let held = Double(heldSMs) * Double(GPUModel.h200.sms) / Double(sms)
        return SMSplitTable.shared.factor(m: m, n: n, k: k, held: held)
    }
}

/// The slowdowns of h200_gemm_sm_split.csv.
struct SMSplitTable: Sendable {
    static let shared = SMSplitTable(MeasuredTables.smSplit)

    /// A slowdown above this is a GEMM that waited for the spin blocks to end (it could
    /// not fit beside them), not what it costs beside them: the one such row (phi35moe
    /// m 1024 gemm1 held 96: 162x) is left out. Every other row is below 7x.
    static let waitedFactor = 20.0

    /// One measured GEMM's slowdown against held SMs.
    struct Slowdown: Sendable {
        let n: Int, k: Int, flops: Double
        /// Slowdown against held SMs, from (0, 1).
        let curve: Curve

        /// The slowdown with `held` of H200's SMs held (0 < held < 132).
        func at(held: Double) -> Double {
            guard held > curve.last else { return curve.at(held) }
            let sms = Double(GPUModel.h200.sms)
            return curve.at(curve.last) * (sms - curve.last) / (sms - held)
        }
    }

    let slowdowns: [Slowdown]

    init(_ rows: [MeasuredTables.SMSplit]) {
        let gemms = Dictionary(grouping: rows) { [$0.shape.n, $0.shape.k, $0.m] }
        slowdowns = gemms.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { key in
            let rows = gemms[key]!
            let alone = rows.first { $0.held == 0 }!.seconds
            let points = rows.map { (x: Double($0.held), y: $0.seconds / alone) }.filter { $0.y <= Self.waitedFactor }
            let (n, k, m) = (key[0], key[1], key[2])
            return Slowdown(n: n, k: k, flops: 2 * Double(m) * Double(n) * Double(k), curve: Curve(points: points))
        }
    }

    /// The slowdown of a GEMM [m,k]x[k,n] with `held` of H200's SMs held (0 < held < 132).
    func factor(m: Int, n: Int, k: Int, held: Double) -> Double {
        let sameShape = slowdowns.filter { $0.n == n && $0.k == k }
        let candidates = sameShape.isEmpty ? slowdowns : sameShape
        let flops = 2 * Double(m) * Double(n) * Double(k)
        return Curve(points: candidates.map { (x: log($0.flops), y: $0.at(held: held)) }).at(log(flops))
    }
}
