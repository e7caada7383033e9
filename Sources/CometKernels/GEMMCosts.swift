import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a GEMM costs on the host device model when costs are sampled (`--gemm-costs
/// sampled`, charged through `HostKernelCosts`): SimGrid SMPI's idea of sampling a
/// computation burst a few times and charging the same figure for every later run of it.
///
/// A *kind* of product is everything but its row counts m and k, which follow the
/// routed rows (m in the forward pass and dx, k in the weight gradients): the output
/// width n, the transposes, the leading dimensions and whether C is accumulated.
/// For each kind, the cost at m and k powers of two is the least thread CPU time of
/// `runs` products on scratch operands, sampled by the first call that needs it; a
/// product costs the bilinear interpolation between the powers of two around its m
/// and k (GEMM time is close to affine in each of them between two such points).
/// The least of a few runs is what the product costs on a core of its own, without
/// another thread's cache traffic or a migration in the middle: so a shape costs the
/// same on every call, whatever the host's load and cores did to that call, and
/// device time neither moves with them nor lets them steer comet's choices.
///
/// The calling thread's CPU for the whole call (sampling included) is reported to
/// the device clock as charged by a model instead (`comet_charge_modelled`).
public final class GEMMCosts: Sendable {
    /// Products timed per sampled size (after one warm-up), the least taken.
    public static let runs = 5

    /// The table the process's GEMMs are charged from, when costs are sampled.
    public static let host = GEMMCosts()

    /// A product without its row counts m and k.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        public let n: Int
        public let transA: Transpose, transB: Transpose
        public let lda: Int, ldb: Int, ldc: Int
        public let accumulates: Bool

        public init(n: Int, transA: Transpose, transB: Transpose, lda: Int, ldb: Int, ldc: Int, accumulates: Bool) {
            (self.n, self.transA, self.transB) = (n, transA, transB)
            (self.lda, self.ldb, self.ldc, self.accumulates) = (lda, ldb, ldc, accumulates)
        }

        public var description: String {
            "n=\(n) \(transA == .none ? "A" : "At") \(transB == .none ? "B" : "Bt") ld \(lda)/\(ldb)/\(ldc)\(accumulates ? " +C" : "")"
        }
    }

    private struct Size: Hashable { let m: Int, k: Int }

    /// One sampled figure: a product of `kind` with `m` rows and reduction length `k`.
    public struct Entry: Sendable, Equatable {
        public let kind: Kind
        public let m: Int, k: Int
        public let seconds: Double

        public init(kind: Kind, m: Int, k: Int, seconds: Double) {
            (self.kind, self.m, self.k, self.seconds) = (kind, m, k, seconds)
        }
    }

    /// Per kind: seconds at each sampled size.
    private let table = Mutex<[Kind: [Size: Double]]>([:])
    /// Whether a table on file was inserted, and the sizes sampled since that it lacked.
    private let inserted = Atomic<Bool>(false), sampledBeyondInserted = Atomic<Int>(0)

    /// Sizes sampled during the run that the inserted table lacked: with any, the
    /// run's figures rest on samples of this run's host, and may move from run to run.
    public var sizesSampledBeyondTable: Int { sampledBeyondInserted.load(ordering: .relaxed) }

    public init() {}

    /// Every figure in the table, sampled or given, in a fixed order.
    public var entries: [Entry] {
        table.withLock { table in
            table.flatMap { kind, sizes in sizes.map { Entry(kind: kind, m: $0.key.m, k: $0.key.k, seconds: $0.value) } }
        }.sorted { ($0.kind.description, $0.m, $0.k) < ($1.kind.description, $1.m, $1.k) }
    }

    /// Adds `entries` (a table sampled before), keeping the least figure where the
    /// table has one already.
    public func insert(_ entries: [Entry]) {
        if !entries.isEmpty { inserted.store(true, ordering: .relaxed) }
        table.withLock { table in
            for entry in entries {
                let size = Size(m: entry.m, k: entry.k)
                table[entry.kind, default: [:]][size] = min(table[entry.kind]?[size] ?? .infinity, entry.seconds)
            }
        }
    }

    /// Seconds a product of `kind` with `m` rows and reduction length `k` costs
    /// (both positive); samples what the table lacks.
    public func seconds(m: Int, k: Int, _ kind: Kind) -> Double {
        let (m0, k0) = (Self.powerOfTwo(below: m), Self.powerOfTwo(below: k))
        let (dm, dk) = (Double(m - m0) / Double(m0), Double(k - k0) / Double(k0))
        func at(_ m: Int, _ k: Int) -> Double { sampled(Size(m: m, k: k), kind) }
        let low = dk == 0 ? at(m0, k0) : at(m0, k0) + (at(m0, 2 * k0) - at(m0, k0)) * dk
        guard dm > 0 else { return low }
        let high = dk == 0 ? at(2 * m0, k0) : at(2 * m0, k0) + (at(2 * m0, 2 * k0) - at(2 * m0, k0)) * dk
        return low + (high - low) * dm
    }

    /// The largest power of two not above `x` (positive).
    private static func powerOfTwo(below x: Int) -> Int { 1 << (Int.bitWidth - 1 - x.leadingZeroBitCount) }

    /// The table's seconds at `size` of `kind`, sampled on first need.
    private func sampled(_ size: Size, _ kind: Kind) -> Double {
        if let known = table.withLock({ $0[kind]?[size] }) { return known }
        let measured = Self.sample(size, kind)
        return table.withLock { table in
            if let known = table[kind]?[size] { return known }
            table[kind, default: [:]][size] = measured
            if inserted.load(ordering: .relaxed) { sampledBeyondInserted.add(1, ordering: .relaxed) }
            return measured
        }
    }

    /// The least thread CPU seconds of `runs` products of `size` and `kind` on
    /// scratch operands of the same layout.
    private static func sample(_ size: Size, _ kind: Kind) -> Double {
        let (m, k, n) = (size.m, size.k, kind.n)
        let (aShape, bShape) = (kind.transA == .none ? (m, k) : (k, m), kind.transB == .none ? (k, n) : (n, k))
        // The call's leading dimensions, or wider where a sampled size needs it.
        let a = Matrix(rows: aShape.0, columns: max(kind.lda, aShape.1))
        let b = Matrix(rows: bShape.0, columns: max(kind.ldb, bShape.1))
        let c = Matrix(rows: m, columns: max(kind.ldc, n))
        let (viewA, viewB, viewC) = (a.view.columns(0..<aShape.1), b.view.columns(0..<bShape.1), c.view.columns(0..<n))
        let beta: Float = kind.accumulates ? 1 : 0
        return withExtendedLifetime((a, b, c)) {
            multiply(viewA, viewB, into: viewC, transA: kind.transA, transB: kind.transB, alpha: 1, beta: beta)
            var least = Double.infinity
            for _ in 0..<runs {
                let start = threadCPUTime()
                multiply(viewA, viewB, into: viewC, transA: kind.transA, transB: kind.transB, alpha: 1, beta: beta)
                least = min(least, threadCPUTime() - start)
            }
            return least
        }
    }
}

/// CPU seconds the calling thread has run.
func threadCPUTime() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}
