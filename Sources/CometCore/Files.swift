import Foundation

/// A failure that this rank alone meets, such as a file that only rank 0 writes:
/// the rank reports it and the job is aborted, so that no peer waits for it in a
/// collective. (What every rank meets alike is an `InputError`.)
public struct LocalFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Writes `data` to `path` atomically (a temporary file, then a rename), or fails
/// with one line that says why.
public func save(_ data: Data, to path: String) throws {
    do {
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw LocalFailure("cannot write \(path): \(error.localizedDescription)")
    }
}

/// Writes `value` as pretty JSON with sorted keys, atomically. Infinities and NaN
/// (a native link's bandwidth, a run without a baseline) are written as strings.
public func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    try save(encoder.encode(value), to: path)
}
