/// A model of the Comet paper, by its expert shapes (the README of `Data/`).
public enum PaperModel: String, CaseIterable, Sendable {
    case mixtral, qwen2moe, phi35moe

    /// Hidden size N (an expert's input and output width).
    public var hidden: Int {
        switch self {
        case .mixtral: 4096
        case .qwen2moe: 2048
        case .phi35moe: 4096
        }
    }

    /// An expert's intermediate size K (before tensor parallelism divides it).
    public var intermediate: Int {
        switch self {
        case .mixtral: 14336
        case .qwen2moe: 1408
        case .phi35moe: 6400
        }
    }
}

/// The two GEMMs of an expert: gemm1 is [m,N]x[N,K/tp], gemm2 is [m,K/tp]x[K/tp,N].
public enum ExpertGEMM: String, CaseIterable, Sendable {
    case gemm1, gemm2
}

/// One expert GEMM of a paper model with its intermediate size divided by `tp`.
public struct ExpertShape: Hashable, Sendable, CustomStringConvertible {
    public let model: PaperModel
    public let tp: Int
    public let gemm: ExpertGEMM

    public init(_ model: PaperModel, tp: Int, _ gemm: ExpertGEMM) {
        precondition(tp > 0 && model.intermediate % tp == 0, "tp \(tp) does not divide \(model)'s intermediate size")
        (self.model, self.tp, self.gemm) = (model, tp, gemm)
    }

    /// Output width (columns of the product).
    public var n: Int { gemm == .gemm1 ? model.intermediate / tp : model.hidden }
    /// Reduction length.
    public var k: Int { gemm == .gemm1 ? model.hidden : model.intermediate / tp }

    public var description: String { "\(model.rawValue) tp \(tp) \(gemm.rawValue)" }
}

/// The H200 measurements of `Data/`, compiled into the library (`.embedInCode`), so
/// they load without any file: public so reports can print them beside the model.
public enum MeasuredTables {
    /// A row of h200_bf16_expert_gemm.csv: a GEMM of `m` rows took `seconds`.
    public struct GEMM: Sendable {
        public let shape: ExpertShape, m: Int, seconds: Double
    }

    /// A row of h200_gemm_sm_split.csv: the tp 1 GEMM took `seconds` with `held` SMs held.
    public struct SMSplit: Sendable {
        public let shape: ExpertShape, m: Int, held: Int, seconds: Double
    }

    /// A row of h200_copy_by_ctas.csv: `ctas` blocks (0: the copy engine) copied
    /// `bytes` along `path` at `rate` bytes/s, in `seconds`.
    public struct Copy: Sendable {
        public let path: String, ctas: Int, bytes: Int, seconds: Double, rate: Double
    }

    public static let expertGEMM: [GEMM] = CSV(PackageResources.h200_bf16_expert_gemm_csv).rows { row in
        let shape = ExpertShape(try row.model("model"), tp: try row.int("tp"), try row.gemm("gemm"))
        guard shape.n == (try row.int("n_out")), shape.k == (try row.int("k_red")) else { throw CSV.Bad.field("n_out/k_red") }
        return GEMM(shape: shape, m: try row.int("m"), seconds: try row.double("ms") * 1e-3)
    }

    public static let smSplit: [SMSplit] = CSV(PackageResources.h200_gemm_sm_split_csv).rows { row in
        SMSplit(
            shape: ExpertShape(try row.model("model"), tp: 1, try row.gemm("gemm")), m: try row.int("m"),
            held: try row.int("held_sms"), seconds: try row.double("ms") * 1e-3)
    }

    public static let copies: [Copy] = CSV(PackageResources.h200_copy_by_ctas_csv).rows { row in
        Copy(
            path: try row.string("path"), ctas: try row.int("ctas"), bytes: try row.int("bytes"),
            seconds: try row.double("ms") * 1e-3, rate: try row.double("gb_per_s") * 1e9)
    }
}

/// A comma-separated table with a header line; lines starting with # are notes.
struct CSV {
    enum Bad: Error { case field(String) }

    /// One record, by column name.
    struct Row {
        let fields: [String: Substring]

        /// The field `name` made into a value by `make`; throws if it is missing or `make` fails.
        func value<T>(_ name: String, _ make: (String) -> T?) throws -> T {
            guard let field = fields[name], let value = make(String(field)) else { throw Bad.field(name) }
            return value
        }
        func string(_ name: String) throws -> String { try value(name) { $0 } }
        func int(_ name: String) throws -> Int { try value(name) { Int($0) } }
        func double(_ name: String) throws -> Double { try value(name) { Double($0) } }
        func model(_ name: String) throws -> PaperModel { try value(name) { PaperModel(rawValue: $0) } }
        func gemm(_ name: String) throws -> ExpertGEMM { try value(name) { ExpertGEMM(rawValue: $0) } }
    }

    let header: [Substring]
    let records: [[Substring]]

    init(_ bytes: [UInt8]) {
        let lines = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingSpaces }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        header = lines.first.map { $0.split(separator: ",") } ?? []
        records = lines.dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
    }

    /// Every record made into a value by `make`; a record it cannot read stops the
    /// process (the tables are compiled in, and a test reads them all).
    func rows<T>(_ make: (Row) throws -> T) -> [T] {
        records.enumerated().map { index, record in
            let row = Row(fields: Dictionary(zip(header, record).map { (String($0), $1) }, uniquingKeysWith: { a, _ in a }))
            do { return try make(row) } catch {
                fatalError("measured table, record \(index + 1) (\(record.joined(separator: ","))): \(error)")
            }
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces.
    fileprivate var trimmingSpaces: Substring {
        let start = firstIndex { !$0.isWhitespace } ?? endIndex
        let end = lastIndex { !$0.isWhitespace }.map(index(after:)) ?? start
        return self[start..<end]
    }
}
