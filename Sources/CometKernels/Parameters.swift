import Glibc

/// All of a model's parameters in one allocation, with a named view per tensor
/// (as llm.c keeps them), and the gradients and AdamW moments in allocations of
/// the same layout.
public final class ParameterSet: @unchecked Sendable {
    /// One tensor's place in the allocation.
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        /// Whether AdamW's weight decay applies (matrices yes; norms' gains no).
        public let decays: Bool
        /// Whether every rank holds the same tensor (dense layers) or its own shard (experts).
        public let replicated: Bool
        public var count: Int { shape.reduce(1, *) }
    }

    /// A tensor to lay out: its name, shape, whether AdamW decays it, whether every rank holds it.
    public typealias Tensor = (name: String, shape: [Int], decays: Bool, replicated: Bool)

    public private(set) var entries: [Entry] = []
    public let values: UnsafeMutableBufferPointer<Float>
    public let gradients: UnsafeMutableBufferPointer<Float>
    public var count: Int { values.count }

    /// Lays out the tensors `(name, shape, decays, replicated)` in order, zeroed.
    public init(_ tensors: [Tensor]) {
        var offset = 0
        for tensor in tensors {
            entries.append(Entry(name: tensor.name, shape: tensor.shape, offset: offset, decays: tensor.decays, replicated: tensor.replicated))
            offset += tensor.shape.reduce(1, *)
        }
        values = .allocateZeroed(max(offset, 1))
        gradients = .allocateZeroed(max(offset, 1))
    }

    deinit {
        values.deallocateZeroed()
        gradients.deallocateZeroed()
    }

    public func entry(_ name: String) -> Entry {
        guard let entry = entries.first(where: { $0.name == name }) else { preconditionFailure("no parameter named \(name)") }
        return entry
    }

    /// The tensor `name` as a matrix [rows, columns] of values (a 1-D tensor is one row).
    public func view(_ name: String) -> MatrixView { matrix(values, entry(name)) }

    /// Its gradient, same shape.
    public func gradient(_ name: String) -> MatrixView { matrix(gradients, entry(name)) }

    private func matrix(_ buffer: UnsafeMutableBufferPointer<Float>, _ entry: Entry) -> MatrixView {
        let columns = entry.shape.last ?? 1
        return MatrixView(base: buffer.baseAddress! + entry.offset, rows: entry.count / max(columns, 1), columns: columns)
    }

    public func zeroGradients() {
        if !ModelledKernels.isTimeOnly { gradients.update(repeating: 0) }
    }
}
