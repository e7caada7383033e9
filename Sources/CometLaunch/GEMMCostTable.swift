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

/// A table of sampled GEMM costs as a file: CSV, one sampled size per line, with
/// the machine it was sampled on (host name, cores, OpenBLAS core) in a comment.
/// Saved by `--save-gemm-costs` and read by `--gemm-costs FILE`, so that runs on one
/// machine charge GEMMs alike, whatever the host's load when each of them ran.
enum GEMMCostTable {
    static let header = "n,trans_a,trans_b,lda,ldb,ldc,accumulates,m,k,seconds"
    private static let machinePrefix = "# machine: "

    static var thisMachine: String { TuningKey.thisMachine(blasCore: OpenBLAS.coreName) }

    /// The table's text, for the machine this runs on.
    static func text(_ entries: [GEMMCosts.Entry]) -> String {
        let lines = entries.map { entry in
            let kind = entry.kind
            let fields: [String] = [
                "\(kind.n)", kind.transA == .none ? "N" : "T", kind.transB == .none ? "N" : "T",
                "\(kind.lda)", "\(kind.ldb)", "\(kind.ldc)", kind.accumulates ? "1" : "0",
                "\(entry.m)", "\(entry.k)", "\(entry.seconds)",
            ]
            return fields.joined(separator: ",")
        }
        let comments = ["# comet GEMM costs: the least thread CPU seconds of \(GEMMCosts.runs) products per size",
                        machinePrefix + thisMachine]
        return (comments + [header] + lines).joined(separator: "\n") + "\n"
    }

    /// The entries of `text` (read from `path`); throws one line that says what is wrong.
    static func entries(_ text: String, path: String) throws -> [GEMMCosts.Entry] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard let machine = lines.first(where: { $0.hasPrefix(machinePrefix) })?.dropFirst(machinePrefix.count),
              let headerAt = lines.firstIndex(of: header)
        else { throw InputError("\(path) is not a GEMM cost table (--save-gemm-costs writes them)") }
        guard machine == thisMachine else {
            throw InputError("\(path) was sampled on \(machine), not on this machine (\(thisMachine)); sample it here")
        }
        return try lines[(headerAt + 1)...].enumerated().map { offset, line in
            guard let entry = entry(line) else {
                throw InputError("\(path), line \(headerAt + offset + 2): not a GEMM cost: \(line)")
            }
            return entry
        }
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

    /// The table at `path`, read by rank 0 and given to every rank. Collective.
    static func load(_ path: String, world: Communicator) throws -> [GEMMCosts.Entry] {
        var values: [Double] = []
        try world.onRankZero {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw InputError("cannot read the GEMM cost table \(path)")
            }
            values = try entries(text, path: path).flatMap(encode)
        }
        var count = [Int64(values.count)]
        try world.broadcast(&count, root: 0)
        if world.rank != 0 { values = [Double](repeating: 0, count: Int(count[0])) }
        try world.broadcast(&values, root: 0)
        return decode(values)
    }

    /// Writes every rank's table, the least figure of each size, to `path` on rank 0. Collective.
    static func save(_ costs: GEMMCosts, to path: String, world: Communicator) throws {
        let gathered = try world.gather(costs.entries.flatMap(encode), root: 0)
        try world.onRankZero {
            let merged = GEMMCosts()
            for values in gathered { merged.insert(decode(values)) }
            try CometCore.save(Data(text(merged.entries).utf8), to: path)
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

    private static func encode(_ entry: GEMMCosts.Entry) -> [Double] {
        let kind = entry.kind
        return [kind.n, kind.transA == .none ? 0 : 1, kind.transB == .none ? 0 : 1, kind.lda, kind.ldb, kind.ldc,
                kind.accumulates ? 1 : 0, entry.m, entry.k].map(Double.init) + [entry.seconds]
    }

    /// The entries `encode` wrote one after another into `values`.
    private static func decode(_ values: [Double]) -> [GEMMCosts.Entry] {
        stride(from: 0, to: values.count, by: 10).map { decode(values[$0..<($0 + 10)]) }
    }

    private static func decode(_ values: ArraySlice<Double>) -> GEMMCosts.Entry {
        let v = Array(values), int = { Int(v[$0]) }
        let kind = GEMMCosts.Kind(n: int(0), transA: v[1] == 0 ? .none : .transposed, transB: v[2] == 0 ? .none : .transposed,
                                  lda: int(3), ldb: int(4), ldc: int(5), accumulates: v[6] != 0)
        return GEMMCosts.Entry(kind: kind, m: int(7), k: int(8), seconds: v[9])
    }
}
