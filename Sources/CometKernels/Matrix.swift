import Glibc

/// A row-major view of `rows x columns` Floats; row `i` starts at `base + i * rowStride`.
///
/// Views do not own memory. Sub-views (row or column ranges) keep the parent's
/// stride, so a GEMM can work on a tile of a larger buffer in place.
public struct MatrixView: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let rows: Int
    public let columns: Int
    /// Elements between the starts of consecutive rows (BLAS's leading dimension).
    public let rowStride: Int

    public init(base: UnsafeMutablePointer<Float>, rows: Int, columns: Int, rowStride: Int? = nil) {
        let stride = rowStride ?? columns
        precondition(rows >= 0 && columns >= 0 && stride >= max(columns, 1), "invalid matrix view \(rows)x\(columns) stride \(stride)")
        self.base = base
        self.rows = rows
        self.columns = columns
        self.rowStride = stride
    }

    /// A view of the whole of `buffer`, read as `rows x columns`.
    public init(_ buffer: UnsafeMutableBufferPointer<Float>, rows: Int, columns: Int) {
        precondition(buffer.count >= rows * columns, "buffer of \(buffer.count) cannot hold \(rows)x\(columns)")
        self.init(base: buffer.baseAddress!, rows: rows, columns: columns)
    }

    /// Rows `range` of this view.
    public func rows(_ range: Range<Int>) -> MatrixView {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        return MatrixView(base: base + range.lowerBound * rowStride, rows: range.count, columns: columns, rowStride: rowStride)
    }

    /// Columns `range` of this view.
    public func columns(_ range: Range<Int>) -> MatrixView {
        precondition(range.lowerBound >= 0 && range.upperBound <= columns, "columns \(range) outside 0..<\(columns)")
        return MatrixView(base: base + range.lowerBound, rows: rows, columns: range.count, rowStride: rowStride)
    }

    public subscript(row: Int, column: Int) -> Float {
        get { base[row * rowStride + column] }
        nonmutating set { base[row * rowStride + column] = newValue }
    }
}

extension MatrixView {
    /// The elements of a view with no gaps between rows.
    public var buffer: UnsafeMutableBufferPointer<Float> {
        precondition(rowStride == columns || rows <= 1, "only a view without gaps between rows is one buffer")
        return UnsafeMutableBufferPointer(start: base, count: rows * columns)
    }

    /// The elements, row by row.
    public var elements: [Float] { (0..<rows).flatMap { Array(UnsafeBufferPointer(start: base + $0 * rowStride, count: columns)) } }

    /// Copies `source` (same shape) into this view (not in a time-only run, whose
    /// values mean nothing: `ModelledKernels`; nor do `fill` and `randomize`).
    public func copy(from source: MatrixView) {
        precondition(source.rows == rows && source.columns == columns, "copy between different shapes")
        if ModelledKernels.isTimeOnly { return }
        for i in 0..<rows { (base + i * rowStride).update(from: source.base + i * source.rowStride, count: columns) }
    }

    public func fill(_ value: Float) {
        if ModelledKernels.isTimeOnly { return }
        for row in 0..<rows { (base + row * rowStride).update(repeating: value, count: columns) }
    }

    /// Fills with values uniform in [-scale, scale), row by row.
    /// In a time-only run only the generator moves on, as far as filling would move it.
    public func randomize(scale: Float, _ generator: inout SeededGenerator) {
        if ModelledKernels.isTimeOnly { return generator.skip(rows * columns) }
        for row in 0..<rows {
            for column in 0..<columns { base[row * rowStride + column] = generator.uniform(scale) }
        }
    }
}

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none, transposed
}

/// An owned, zero-initialised row-major matrix `[rows, columns]`.
public final class Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    public let storage: UnsafeMutableBufferPointer<Float>

    public init(rows: Int, columns: Int) {
        precondition(rows >= 0 && columns >= 0, "matrix sizes must not be negative")
        self.rows = rows
        self.columns = columns
        storage = .allocateZeroed(max(1, rows * columns))
    }

    deinit { storage.deallocateZeroed() }

    public var view: MatrixView { MatrixView(base: storage.baseAddress!, rows: rows, columns: columns) }

    public func fill(_ value: Float) { view.fill(value) }

    /// Fills with values uniform in [-scale, scale).
    public func randomize(scale: Float, _ generator: inout SeededGenerator) { view.randomize(scale: scale, &generator) }

    /// The elements in row-major order.
    public var elements: [Float] { view.elements }
}

/// A scratch matrix of `columns` columns whose row count grows on demand.
/// Growing discards the contents.
public final class RowBuffer: @unchecked Sendable {
    public let columns: Int
    private var matrix: Matrix

    public init(columns: Int, rows: Int = 0) {
        self.columns = columns
        matrix = Matrix(rows: rows, columns: columns)
    }

    /// The first `count` rows, growing the buffer when it is smaller.
    public func rows(_ count: Int) -> MatrixView {
        if count > matrix.rows { matrix = Matrix(rows: max(count, matrix.rows * 5 / 4), columns: columns) }
        return matrix.view.rows(0..<count)
    }
}

extension UnsafeMutableBufferPointer<Float> {
    /// Bytes from which zeroed allocations are pages of their own (`allocateZeroed`).
    static let pagedBytes = 1 << 20

    /// `count` zeroed Floats, given back with `deallocateZeroed`. From a megabyte up they
    /// are anonymous pages of their own, which the kernel maps on first write, so memory
    /// that is never written (all of a time-only run's) is never resident; smaller ones
    /// come from `calloc`. (`calloc` alone would not do: once a large block is freed,
    /// glibc serves blocks up to 32 MB from its heap and clears them by writing.)
    public static func allocateZeroed(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        let bytes = count * MemoryLayout<Float>.stride
        let memory = bytes < pagedBytes ? calloc(count, MemoryLayout<Float>.stride)
            : mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0).flatMap { $0 == MAP_FAILED ? nil : $0 }
        guard let memory else { fatalError("out of memory: \(count) floats") }
        return UnsafeMutableBufferPointer(start: memory.assumingMemoryBound(to: Float.self), count: count)
    }

    /// Gives back what `allocateZeroed` gave.
    public func deallocateZeroed() {
        let bytes = count * MemoryLayout<Float>.stride
        if bytes < Self.pagedBytes { free(baseAddress) } else { munmap(baseAddress, bytes) }
    }
}
