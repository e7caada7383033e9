import CometCore
import CometKernels
import CometMPI
import Foundation

/// Where training sequences come from. Sequence `i` of a step is the same
/// whichever rank reads it, so a global batch is the same for any number of ranks:
/// rank r of W reads sequences r B/W ..< (r + 1) B/W.
public protocol DataSource: Sendable {
    /// Tokens in the vocabulary.
    var vocabularySize: Int { get }
    /// `count` sequences of `length` tokens starting at global index `first` of
    /// `step`, from the training (or held-out evaluation) split, row after row.
    func sequences(step: Int, first: Int, count: Int, length: Int, evaluation: Bool) -> [Int32]
    /// The best achievable loss, nats per predicted token, when known exactly.
    func lossFloor(length: Int) -> Double?
    /// The loss of a model that ignores context, when known.
    func contextFreeLoss(length: Int) -> Double?
}

extension MarkovLanguage: DataSource {
    public func sequences(step: Int, first: Int, count: Int, length: Int, evaluation: Bool) -> [Int32] {
        (first..<(first + count)).flatMap { index in
            var generator = SeededGenerator(seed: sequenceSeed(step: step, index: index, evaluation: evaluation))
            return sample(length: length, &generator)
        }
    }

    public func lossFloor(length: Int) -> Double? { entropyFloor(length: length) }
    public func contextFreeLoss(length: Int) -> Double? { unigramEntropy(length: length) }
}

/// A seed per (split, step, sequence), independent of ranks.
func sequenceSeed(step: Int, index: Int, evaluation: Bool) -> UInt64 {
    var generator = SeededGenerator(seed: UInt64(step) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index) &* 0xBF58_476D_1CE4_E5B9
                                    ^ (evaluation ? 0x94D0_49BB_1331_11EB : 0))
    return generator.next()
}

/// Byte-level text: every byte is a token (vocabulary 256). Sequences are windows
/// at positions drawn per (step, sequence); the last tenth of the file is held out
/// for evaluation.
public struct ByteText: DataSource {
    public let bytes: [UInt8]
    public var vocabularySize: Int { 256 }

    /// Reads `path`; fails with a clear message when it is missing, unreadable or
    /// too short for sequences of `length` tokens in both splits.
    public init(path: String, length: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("cannot read the data file \(path): it does not exist or is not readable")
        }
        guard data.count >= 10 * (length + 1) else {
            throw InputError("the data file \(path) has \(data.count) bytes; sequences of \(length) tokens need at least \(10 * (length + 1))")
        }
        bytes = [UInt8](data)
    }

    public func sequences(step: Int, first: Int, count: Int, length: Int, evaluation: Bool) -> [Int32] {
        let split = bytes.count * 9 / 10
        let (start, span) = evaluation ? (split, bytes.count - split) : (0, split)
        return (first..<(first + count)).flatMap { index -> [Int32] in
            let offset = Int(sequenceSeed(step: step, index: index, evaluation: evaluation) % UInt64(span - length + 1))
            return bytes[(start + offset)..<(start + offset + length)].map { Int32($0) }
        }
    }

    public func lossFloor(length: Int) -> Double? { nil }
    public func contextFreeLoss(length: Int) -> Double? { nil }
}
