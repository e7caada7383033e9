/// An error that every rank throws alike (bad flags, a layout that does not fit the
/// job, an invalid configuration, data or checkpoint): rank 0 alone reports it and
/// every rank exits 1. Any other error is local to one rank, which reports it and
/// aborts the job so that no peer is left waiting.
public protocol UniformError: Error, CustomStringConvertible {}

/// Bad input, with a message that says in one line what is wrong.
public struct InputError: UniformError, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
