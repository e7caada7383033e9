import CMPI
import CometCore

/// An MPI call that did not return `MPI_SUCCESS`, with the library's own message.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    /// The C error code the call returned.
    public let code: Int32
    /// The MPI function that failed, e.g. `MPI_Win_allocate_shared`.
    public let call: String
    /// `MPI_Error_string` for `code`.
    public let message: String

    public init(code: Int32, call: String) {
        self.code = code
        self.call = call
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        if MPI_Error_string(code, &text, &length) == MPI_SUCCESS {
            self.message = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            self.message = "unknown MPI error"
        }
    }

    public var description: String { "\(call) failed: \(message) (MPI error \(code))" }
}

/// Throws `MPIError` unless `code` is `MPI_SUCCESS`.
@inline(__always)
func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
    if code != MPI_SUCCESS { throw MPIError(code: code, call: call()) }
}

extension LayoutError: UniformError {}
extension MPIRuntimeError: UniformError {}
