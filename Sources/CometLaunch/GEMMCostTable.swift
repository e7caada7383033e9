import ArgumentParser
import CometCore
import CometKernels
import CometMPI
import CometMoE
import Foundation

/// How device time charges a GEMM (`--gemm-costs`).
public enum GEMMCostChoice: ExpressibleByArgument, Equatable, Sendable {
    /// From per-shape costs sampled on this host during the run (`GEMMCosts`).
    case sampled
    /// By the CPU time each call used.
    case measured
    /// From a table that an earlier run saved (`--save-gemm-costs`); what it lacks is
    /// sampled during the run.
    case table(path: String)

    public init?(argument: String) {
        switch argument {
        case "sampled": self = .sampled
        case "measured": self = .measured
        case "": return nil
        default: self = .table(path: argument)
        }
    }

    public var defaultValueDescription: String { "sampled" }
}

/// The sampled costs of a run as a file: CSV, one sampled GEMM size per line, then
/// (when the run modelled them, `--host-cpu ignored`) one element-wise kernel's rate
/// per line, with the machine they were sampled on (host name, cores, OpenBLAS core)
/// in a comment. Saved by `--save-gemm-costs` and read by `--gemm-costs FILE`, so that
/// runs on one machine charge their kernels alike, whatever the host's load when each
/// of them ran.
enum GEMMCostTable {
    static let header = "n,trans_a,trans_b,lda,ldb,ldc,accumulates,m,k,seconds"
    static let kernelHeader = "kernel,seconds_per_element"
    private static let machinePrefix = "# machine: "

    static var thisMachine: String { TuningKey.thisMachine(blasCore: OpenBLAS.coreName) }

    /// What a table holds.
    struct Contents {
        var gemms: [GEMMCosts.Entry] = []
        var kernels: [(kernel: String, secondsPerElement: Double)] = []

        /// The process's tables.
        static var host: Contents { Contents(gemms: GEMMCosts.host.entries, kernels: ElementwiseCosts.host.entries) }

        /// Adds these costs to the process's tables.
        func insertIntoHost() {
            GEMMCosts.host.insert(gemms)
            ElementwiseCosts.host.insert(kernels)
        }
    }

    /// The table's text, for the machine this runs on.
    static func text(_ contents: Contents) -> String {
        let lines = contents.gemms.map { entry in
            let kind = entry.kind
            let fields: [String] = [
                "\(kind.n)", kind.transA == .none ? "N" : "T", kind.transB == .none ? "N" : "T",
                "\(kind.lda)", "\(kind.ldb)", "\(kind.ldc)", kind.accumulates ? "1" : "0",
                "\(entry.m)", "\(entry.k)", "\(entry.seconds)",
            ]
            return fields.joined(separator: ",")
        }
        let kernels = contents.kernels.isEmpty ? [] : [kernelHeader] + contents.kernels.map { "\($0.kernel),\($0.secondsPerElement)" }
        let comments = ["# comet GEMM costs: the least thread CPU seconds of \(GEMMCosts.runs) products per size;"
                            + " element-wise kernels: the least seconds per element of their first \(ElementwiseCosts.samples) calls",
                        machinePrefix + thisMachine]
        return (comments + [header] + lines + kernels).joined(separator: "\n") + "\n"
    }

    /// The contents of `text` (read from `path`); throws one line that says what is
    /// wrong. The machine it names must be this one when `checkMachine`.
    static func contents(_ text: String, path: String, checkMachine: Bool = true) throws -> Contents {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard let machine = lines.first(where: { $0.hasPrefix(machinePrefix) })?.dropFirst(machinePrefix.count),
              let headerAt = lines.firstIndex(of: header)
        else { throw InputError("\(path) is not a GEMM cost table (--save-gemm-costs writes them)") }
        guard !checkMachine || machine == thisMachine else {
            throw InputError("\(path) was sampled on \(machine), not on this machine (\(thisMachine)); sample it here")
        }
        let kernelsAt = lines.firstIndex(of: kernelHeader) ?? lines.count
        guard kernelsAt > headerAt else { throw InputError("\(path): its kernel rates come before its GEMM costs") }
        func problem(_ offset: Int, _ what: String) -> InputError {
            InputError("\(path), line \(offset + 1): not \(what): \(lines[offset])")
        }
        var contents = Contents()
        for offset in (headerAt + 1)..<kernelsAt {
            guard let entry = entry(lines[offset]) else { throw problem(offset, "a GEMM cost") }
            contents.gemms.append(entry)
        }
        for offset in (kernelsAt + 1)..<max(kernelsAt + 1, lines.count) {
            guard let kernel = kernelRate(lines[offset]) else { throw problem(offset, "a kernel rate") }
            contents.kernels.append(kernel)
        }
        return contents
    }

    private static func entry(_ line: String) -> GEMMCosts.Entry? {
        let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 10 else { return nil }
        let numbers = [0, 3, 4, 5, 7, 8].compactMap { Int(fields[$0]) }.filter { $0 > 0 }
        let trans = [fields[1], fields[2]].compactMap { ["N": Transpose.none, "T": .transposed][$0] }
        guard numbers.count == 6, trans.count == 2, ["0", "1"].contains(fields[6]),
              let seconds = Double(fields[9]), seconds.isFinite, seconds >= 0
        else { return nil }
        let kind = GEMMCosts.Kind(n: numbers[0], transA: trans[0], transB: trans[1], lda: numbers[1], ldb: numbers[2],
                                  ldc: numbers[3], accumulates: fields[6] == "1")
        return GEMMCosts.Entry(kind: kind, m: numbers[4], k: numbers[5], seconds: seconds)
    }

    private static func kernelRate(_ line: String) -> (kernel: String, secondsPerElement: Double)? {
        let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 2, !fields[0].isEmpty, let rate = Double(fields[1]), rate.isFinite, rate >= 0 else { return nil }
        return (fields[0], rate)
    }

    /// The table at `path`, read and checked by rank 0 and given to every rank. Collective.
    static func load(_ path: String, world: Communicator) throws -> Contents {
        var bytes: [UInt8] = []
        try world.onRankZero {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw InputError("cannot read the GEMM cost table \(path)")
            }
            _ = try contents(text, path: path)
            bytes = Array(data)
        }
        var count = [Int64(bytes.count)]
        try world.broadcast(&count, root: 0)
        if world.rank != 0 { bytes = [UInt8](repeating: 0, count: Int(count[0])) }
        try world.broadcast(&bytes, root: 0)
        return try contents(String(decoding: bytes, as: UTF8.self), path: path, checkMachine: false)
    }

    /// Writes every rank's tables, the least figure of each GEMM size and kernel, to
    /// `path` on rank 0. Collective.
    static func save(_ contents: Contents, to path: String, world: Communicator) throws {
        let gathered = try world.gather(Array(text(contents).utf8), root: 0)
        try world.onRankZero {
            let (gemms, kernels) = (GEMMCosts(), ElementwiseCosts())
            for bytes in gathered {
                let part = try Self.contents(String(decoding: bytes, as: UTF8.self), path: "rank's table", checkMachine: false)
                gemms.insert(part.gemms)
                kernels.insert(part.kernels)
            }
            try CometCore.save(Data(text(Contents(gemms: gemms.entries, kernels: kernels.entries)).utf8), to: path)
        }
    }

    /// Why a table cannot be written to `path` (nil: it can): its directory must exist
    /// and be writable, and `path` must not be a directory.
    static func writeProblem(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return "is a directory"
        }
        let directory = (path as NSString).deletingLastPathComponent
        let parent = directory.isEmpty ? "." : directory
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "the directory \(parent) does not exist"
        }
        return FileManager.default.isWritableFile(atPath: parent) ? nil : "the directory \(parent) cannot be written to"
    }
}
