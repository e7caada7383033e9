import Foundation

/// Reading and writing the safetensors format (the one Python's `safetensors`
/// reads): an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the raw little-endian data.
public enum Safetensors {
    /// One tensor: a name, a shape and its values (F32, or I64 for counters).
    public struct Tensor: Equatable, Sendable {
        public enum Values: Equatable, Sendable {
            case float32([Float])
            case int64([Int64])
        }

        public let name: String
        public let shape: [Int]
        public let values: Values

        public init(name: String, shape: [Int], values: Values) {
            self.name = name
            self.shape = shape
            self.values = values
        }

        var dtype: String {
            switch values {
            case .float32: "F32"
            case .int64: "I64"
            }
        }

        var byteCount: Int {
            switch values {
            case .float32(let v): v.count * 4
            case .int64(let v): v.count * 8
            }
        }
    }

    /// Why a file could not be read.
    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The file's bytes: header, then tensors in the order given. `metadata` goes to
    /// the header's `__metadata__` (string values only, as the format requires).
    public static func encode(_ tensors: [Tensor], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for tensor in tensors {
            header[tensor.name] = ["dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, offset + tensor.byteCount]]
            offset += tensor.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so that the data starts 8-byte aligned.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var data = Data()
        data.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for tensor in tensors {
            switch tensor.values {
            case .float32(let values): values.withUnsafeBytes { data.append(contentsOf: $0) }
            case .int64(let values): values.map(\.littleEndian).withUnsafeBytes { data.append(contentsOf: $0) }
            }
        }
        return data
    }

    /// Tensors and metadata from a file's bytes; every size and range is checked.
    public static func decode(_ data: Data) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard data.count >= 8 else { throw FormatError(description: "file too short for a safetensors header (\(data.count) bytes)") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw FormatError(description: "header length \(headerLength) runs past the end of the file (\(data.count) bytes)")
        }
        let dataStart = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart))
        } catch {
            throw FormatError(description: "header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw FormatError(description: "header is not a JSON object") }
        var metadata: [String: String] = [:]
        var tensors: [String: Tensor] = [:]
        for (name, entry) in header {
            if name == "__metadata__" {
                guard let values = entry as? [String: String] else { throw FormatError(description: "__metadata__ must map strings to strings") }
                metadata = values
                continue
            }
            guard let fields = entry as? [String: Any], let dtype = fields["dtype"] as? String,
                  let shape = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int], offsets.count == 2
            else { throw FormatError(description: "tensor \(name): entry lacks dtype, shape or data_offsets") }
            let elementSize = switch dtype {
            case "F32": 4
            case "I64": 8
            default: throw FormatError(description: "tensor \(name): dtype \(dtype) is not supported (F32, I64)")
            }
            let count = shape.reduce(1, *)
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] - offsets[0] == count * elementSize,
                  dataStart + offsets[1] <= data.count
            else { throw FormatError(description: "tensor \(name): shape \(shape) and byte range \(offsets) do not fit the file") }
            let bytes = data.subdata(in: (dataStart + offsets[0])..<(dataStart + offsets[1]))
            let values: Tensor.Values = dtype == "F32"
                ? .float32(bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
                : .int64(bytes.withUnsafeBytes { $0.bindMemory(to: Int64.self).map { Int64(littleEndian: $0) } })
            tensors[name] = Tensor(name: name, shape: shape, values: values)
        }
        return (tensors, metadata)
    }

    /// Writes `tensors` to `url` atomically: a temporary file beside it, then a rename,
    /// so a reader never sees half a file.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        try encode(tensors, metadata: metadata).write(to: temporary)
        if rename(temporary.path, url.path) != 0 {
            try? FileManager.default.removeItem(at: temporary)
            throw FormatError(description: "cannot move \(temporary.path) to \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    public static func read(from url: URL) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        try decode(Data(contentsOf: url))
    }
}
