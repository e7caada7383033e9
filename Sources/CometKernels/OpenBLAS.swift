import COpenBLAS
import CometShim
import Foundation

/// The OpenBLAS library this process runs: which kernel, checked how, how fast.
public enum OpenBLAS {
    /// The kernel family OpenBLAS chose at load time, e.g. "Prescott" or "SkylakeX".
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// The library's build line, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ...".
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// Every BLAS call runs on its caller's thread only, so a rank's GEMM threads
    /// share out the cores instead of each starting a BLAS thread pool.
    public static func useCallerThreadOnly() { openblas_set_num_threads(1) }

    /// Cores whose kernels use AVX2 or better; the others are generic fall-backs.
    static let avx2Cores: Set<String> = ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"]

    /// The core to ask for instead of `core`, or nil when `core` is already right.
    /// OpenBLAS falls back to a generic core (e.g. "Prescott") on CPUs it does
    /// not know, even when they support AVX-512 or AVX2.
    public static func preferredCore(instead core: String, avx512: Bool, avx2: Bool) -> String? {
        guard !avx2Cores.contains(core) else { return nil }
        if avx512 { return "SkylakeX" }
        if avx2 { return "Haswell" }
        return nil
    }

    /// How the running kernel was chosen.
    public enum KernelOrigin: Sendable, Equatable {
        /// OpenBLAS's own choice at load time.
        case library
        /// The user's `OPENBLAS_CORETYPE`.
        case user
        /// comet re-ran the process with a better core than the library's choice.
        case selected(replacing: String)
        /// comet tried `candidate`, it failed the check, and the library's choice runs.
        case rejected(candidate: String)
    }

    /// The running kernel, how it was chosen, and its check against `referenceGEMM`.
    public struct KernelChoice: Sendable {
        public let core: String
        public let origin: KernelOrigin
        public let check: KernelCheck

        public var summary: String {
            let how = switch origin {
            case .library: "OpenBLAS's choice"
            case .user: "set by OPENBLAS_CORETYPE"
            case .selected(let replacing): "selected by comet instead of the generic \(replacing)"
            case .rejected(let candidate): "\(candidate) failed the check, so OpenBLAS's choice runs"
            }
            return "core \(core) (\(how)); \(check.summary)"
        }
    }

    // Set on the re-run process only.
    static let replacedCoreVariable = "COMET_BLAS_REPLACED_CORE"
    static let rejectedCoreVariable = "COMET_BLAS_REJECTED_CORE"

    /// Settles which OpenBLAS kernel this process runs. Call first thing in `main`,
    /// before `MPI_Init`: OpenBLAS reads `OPENBLAS_CORETYPE` only when it loads, so
    /// choosing a better core means re-running the program (`execv` keeps the pid,
    /// the arguments and the launcher's environment). A selected core is checked
    /// against `referenceGEMM`; if it fails, the program runs once more with the
    /// library's own choice. A user's `OPENBLAS_CORETYPE` is never overridden.
    public static func chooseKernel() -> KernelChoice {
        useCallerThreadOnly()
        if let candidate = takeVariable(rejectedCoreVariable) {
            return KernelChoice(core: coreName, origin: .rejected(candidate: candidate), check: verifyKernel())
        }
        if let replaced = takeVariable(replacedCoreVariable) {
            let check = verifyKernel()
            if check.passed {
                return KernelChoice(core: coreName, origin: .selected(replacing: replaced), check: check)
            }
            setenv("OPENBLAS_CORETYPE", replaced, 1)
            setenv(rejectedCoreVariable, coreName, 1)
            rerunProcess()
            return KernelChoice(core: coreName, origin: .library, check: check)
        }
        if getenv("OPENBLAS_CORETYPE") != nil {
            return KernelChoice(core: coreName, origin: .user, check: verifyKernel())
        }
        if let better = preferredCore(instead: coreName, avx512: comet_cpu_has_avx512(), avx2: comet_cpu_has_avx2()) {
            setenv("OPENBLAS_CORETYPE", better, 1)
            setenv(replacedCoreVariable, coreName, 1)
            // Keeps OpenBLAS from starting a thread pool that comet never uses.
            setenv("OPENBLAS_NUM_THREADS", "1", 0)
            rerunProcess()
            unsetenv("OPENBLAS_CORETYPE")
            unsetenv(replacedCoreVariable)
        }
        return KernelChoice(core: coreName, origin: .library, check: verifyKernel())
    }

    /// Replaces this process with a fresh run of the same program; returns only if `execv` fails.
    private static func rerunProcess() {
        comet_flush_all()
        execv("/proc/self/exe", CommandLine.unsafeArgv)
    }

    /// The variable's value, removed from the environment so that child processes do not inherit it.
    private static func takeVariable(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        unsetenv(name)
        return value
    }

    // MARK: Checking and measuring

    /// The running kernel against `referenceGEMM` on odd shapes and every transpose.
    public struct KernelCheck: Sendable {
        /// Largest |BLAS - reference| / max |reference| over the cases.
        public let maxRelativeError: Double
        public static let tolerance = 1e-5
        public var passed: Bool { maxRelativeError <= Self.tolerance }
        public var summary: String {
            "checked against a naive GEMM: max relative error \(String(format: "%.1e", maxRelativeError)) "
                + (passed ? "(ok)" : "(FAILED, tolerance \(String(format: "%.0e", Self.tolerance)))")
        }
    }

    public static func verifyKernel() -> KernelCheck {
        var generator = SeededGenerator(seed: 0xC0FFEE)
        var worst = 0.0
        for (m, n, k) in [(37, 53, 129), (96, 80, 200), (1, 67, 33)] {
            for transA in [Transpose.none, .transposed] {
                for transB in [Transpose.none, .transposed] {
                    let a = (0..<(m * k)).map { _ in generator.uniform(1) }
                    let b = (0..<(k * n)).map { _ in generator.uniform(1) }
                    worst = max(worst, relativeError(m: m, n: n, k: k, a: a, transA, b: b, transB))
                }
            }
        }
        return KernelCheck(maxRelativeError: worst)
    }

    private static func relativeError(
        m: Int, n: Int, k: Int, a: [Float], _ transA: Transpose, b: [Float], _ transB: Transpose
    ) -> Double {
        var a = a, b = b
        var fast = [Float](repeating: 0, count: m * n)
        var slow = fast
        a.withUnsafeMutableBufferPointer { a in
            b.withUnsafeMutableBufferPointer { b in
                let viewA = transA == .none ? MatrixView(a, rows: m, columns: k) : MatrixView(a, rows: k, columns: m)
                let viewB = transB == .none ? MatrixView(b, rows: k, columns: n) : MatrixView(b, rows: n, columns: k)
                fast.withUnsafeMutableBufferPointer { gemm(viewA, viewB, into: MatrixView($0, rows: m, columns: n), transA: transA, transB: transB) }
                slow.withUnsafeMutableBufferPointer { referenceGEMM(viewA, viewB, into: MatrixView($0, rows: m, columns: n), transA: transA, transB: transB) }
            }
        }
        let scale = slow.map { abs(Double($0)) }.max() ?? 0
        let error = zip(fast, slow).map { abs(Double($0) - Double($1)) }.max() ?? 0
        return scale == 0 ? error : error / scale
    }

    /// Single-thread GFLOP/s of this host's BLAS at C [m, n] = A [m, k] x B [k, n],
    /// timed over at least `seconds` after one warm-up call (never charged from a
    /// model: `ModelledKernels`).
    public static func measureGFLOPs(m: Int, n: Int, k: Int, seconds: Double = 0.3) -> Double {
        let a = UnsafeMutableBufferPointer<Float>.allocate(capacity: m * k)
        let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: k * n)
        let c = UnsafeMutableBufferPointer<Float>.allocate(capacity: m * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        var generator = SeededGenerator(seed: 1)
        for i in a.indices { a[i] = generator.uniform(1) }
        for i in b.indices { b[i] = generator.uniform(1) }
        let viewA = MatrixView(a, rows: m, columns: k)
        let viewB = MatrixView(b, rows: k, columns: n)
        let viewC = MatrixView(c, rows: m, columns: n)
        let product = { multiply(viewA, viewB, into: viewC, transA: .none, transB: .none, alpha: 1, beta: 0) }
        product()
        var calls = 0
        let start = comet_monotonic_seconds()
        var elapsed = 0.0
        repeat {
            product()
            calls += 1
            elapsed = comet_monotonic_seconds() - start
        } while elapsed < seconds
        return 2 * Double(m) * Double(n) * Double(k) * Double(calls) / elapsed / 1e9
    }
}
