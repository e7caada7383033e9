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

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none, transposed
}
