/// An error that every rank throws alike (bad flags, a layout that does not fit the
/// job, an invalid configuration, data or checkpoint, a failed check of the
/// runtime): rank 0 alone reports it and every rank exits 1. Any other error is
/// local to one rank (`LocalFailure`, `MPIError`), which reports it and aborts the
/// job so that no peer is left waiting.
public protocol UniformError: Error, CustomStringConvertible {}

/// Bad input, or a check that failed on every rank alike, with a message that
/// says in one line what is wrong.
public struct InputError: UniformError, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
