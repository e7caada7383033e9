import Foundation

/// JSON read from configuration files, with Foundation's errors made readable.
public enum JSONText {
    /// The value `data` holds (what `JSONSerialization` gives, a bare number or string
    /// included); throws `InputError` saying where it stops parsing.
    public static func parse(_ data: Data) throws -> Any {
        do {
            return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw InputError(syntaxProblem(error, in: data))
        }
    }

    /// Foundation's reason for `error`, a failed parse of `data`, with the place as
    /// line and column. Linux's `JSONSerialization` gives no `NSJSONSerializationErrorIndex`,
    /// only "Invalid value around character N." in `NSDebugDescription`, N being the
    /// 0-based UTF-8 byte offset after any byte-order mark; both are read here. An
    /// unexpected end of file has no offset: the place is then the text's last character.
    static func syntaxProblem(_ error: any Error, in data: Data) -> String {
        let text = data.starts(with: [0xEF, 0xBB, 0xBF]) ? data.dropFirst(3) : data[...]
        guard let last = text.lastIndex(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) else { return "the file is empty" }
        let info = (error as NSError).userInfo
        var reason = info[NSDebugDescriptionErrorKey] as? String ?? (error as NSError).localizedDescription
        if reason.hasSuffix(".") { reason.removeLast() }
        var offset = info["NSJSONSerializationErrorIndex"] as? Int
        if let range = reason.range(of: #" around character (\d+)"#, options: .regularExpression) {
            offset = offset ?? Int(reason[range].split(separator: " ").last!)
            reason.removeSubrange(range)
        }
        reason = reason.prefix(1).lowercased() + reason.dropFirst()
        guard let offset else {
            guard reason.contains("end of file"), let (line, column) = position(ofByte: last - text.startIndex, in: text) else { return reason }
            return "\(reason) (its last character is at line \(line), column \(column))"
        }
        guard let (line, column) = position(ofByte: offset, in: text) else { return "\(reason) at byte \(offset)" }
        return "\(reason) at line \(line), column \(column)"
    }

    /// The 1-based line and column of byte `offset` of `text`, the column counted in
    /// characters; nil when `offset` lies beyond the text.
    static func position(ofByte offset: Int, in text: Data) -> (line: Int, column: Int)? {
        guard offset >= 0, offset <= text.count else { return nil }
        let before = text.prefix(offset)
        let lineStart = before.lastIndex(of: 0x0A).map { before.index(after: $0) } ?? before.startIndex
        let line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
        return (line, String(decoding: before[lineStart...], as: UTF8.self).count + 1)
    }

    /// A `JSONDecoder` failure as one line: the key path and what was wrong there.
    public static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "it is not valid JSON" : "\(path(context)): \(context.debugDescription)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(path(context)): \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return context.codingPath.isEmpty ? "missing key \(key.stringValue)" : "\(path(context)): missing key \(key.stringValue)"
        @unknown default:
            return "\(error)"
        }
    }
}
