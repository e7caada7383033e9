import CometKernels
import Foundation

/// The built-in data: a synthetic language whose entropy rate is known exactly.
///
/// There are S sparse random Markov sources over a vocabulary of V data tokens.
/// Every sequence starts with one of S marker tokens (ids V ..< V + S) that says
/// which source wrote it; the source's first token is drawn from its start
/// distribution, and each next token from the row of the current token in its
/// transition matrix, which has `successors` non-zero entries. A model that has
/// learned the sources and reads the marker can reach the entropy floor; one that
/// ignores context only reaches the unigram entropy, several times higher.
public struct MarkovLanguage: Sendable {
    public let sources: Int
    /// V: data tokens; the markers follow them.
    public let dataTokens: Int
    public let successors: Int
    /// Start distribution per source [S][V].
    let start: [[Double]]
    /// Transition rows per source [S][V]: (next token, probability) pairs.
    let transitions: [[[(token: Int, probability: Double)]]]

    /// Tokens in the vocabulary: data tokens and one marker per source.
    public var vocabularySize: Int { dataTokens + sources }

    public init(sources: Int, dataTokens: Int, successors: Int, seed: UInt64) {
        precondition(sources >= 1 && dataTokens >= 2 && (1...dataTokens).contains(successors), "invalid Markov language")
        self.sources = sources
        self.dataTokens = dataTokens
        self.successors = successors
        var generator = SeededGenerator(seed: seed)
        func weights(_ count: Int) -> [Double] {
            let raw = (0..<count).map { _ in 0.2 + Double(generator.next() >> 11) * 0x1p-53 }
            let total = raw.reduce(0, +)
            return raw.map { $0 / total }
        }
        start = (0..<sources).map { _ in weights(dataTokens) }
        transitions = (0..<sources).map { _ in
            (0..<dataTokens).map { _ in
                var chosen: [Int] = []
                while chosen.count < successors {
                    let token = Int(generator.next() % UInt64(dataTokens))
                    if !chosen.contains(token) { chosen.append(token) }
                }
                return Array(zip(chosen, weights(successors))).map { (token: $0.0, probability: $0.1) }
            }
        }
    }

    /// The marker token of `source`.
    public func marker(_ source: Int) -> Int { dataTokens + source }

    /// One sequence of `length` tokens (marker first) from a source drawn uniformly.
    public func sample(length: Int, _ generator: inout SeededGenerator) -> [Int32] {
        let source = Int(generator.next() % UInt64(sources))
        var tokens = [Int32(marker(source))]
        var current = draw(start[source].enumerated().map { ($0.offset, $0.element) }, &generator)
        while tokens.count < length {
            tokens.append(Int32(current))
            current = draw(transitions[source][current].map { ($0.token, $0.probability) }, &generator)
        }
        return tokens
    }

    private func draw(_ choices: [(Int, Double)], _ generator: inout SeededGenerator) -> Int {
        var u = Double(generator.next() >> 11) * 0x1p-53
        for (token, probability) in choices {
            u -= probability
            if u < 0 { return token }
        }
        return choices.last!.0
    }

    /// Expected cross-entropy (nats per predicted token) of the best possible model
    /// on sequences of `length` tokens: predictions of tokens 1 ..< length, each
    /// from everything before it, averaged over positions and sources.
    public func entropyFloor(length: Int) -> Double {
        averageOverPositions(length: length) { source, distribution in
            // Entropy of the next token given the current one, under `distribution`.
            zip(distribution, transitions[source]).reduce(0) { total, pair in
                total + pair.0 * entropy(pair.1.map(\.probability))
            }
        } first: { source in entropy(start[source]) }
    }

    /// Entropy (nats per predicted token) of the tokens' overall frequencies: what a
    /// model that ignores context reaches.
    public func unigramEntropy(length: Int) -> Double {
        var marginal = [Double](repeating: 0, count: vocabularySize)
        let positions = Double(max(length - 1, 1))
        for source in 0..<sources {
            var distribution = start[source]
            for _ in 1..<max(length, 2) {
                for token in 0..<dataTokens { marginal[token] += distribution[token] / positions / Double(sources) }
                distribution = step(distribution, source: source)
            }
        }
        return entropy(marginal)
    }

    /// The distribution of the next token after one step of `source` from `distribution`.
    private func step(_ distribution: [Double], source: Int) -> [Double] {
        var next = [Double](repeating: 0, count: dataTokens)
        for (token, weight) in distribution.enumerated() where weight > 0 {
            for edge in transitions[source][token] { next[edge.token] += weight * edge.probability }
        }
        return next
    }

    /// Mean over sources and predicted positions 1 ..< length of a per-position value:
    /// `first` for position 1 (the start token), `later` for the others, given the
    /// distribution of the token before.
    private func averageOverPositions(
        length: Int, later: (Int, [Double]) -> Double, first: (Int) -> Double
    ) -> Double {
        guard length >= 2 else { return 0 }
        var total = 0.0
        for source in 0..<sources {
            total += first(source)
            var distribution = start[source]
            for _ in 2..<max(length, 2) {
                total += later(source, distribution)
                distribution = step(distribution, source: source)
            }
        }
        return total / Double(sources * (length - 1))
    }
}

/// Entropy in nats of a probability vector.
func entropy(_ probabilities: [Double]) -> Double {
    -probabilities.reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) }
}
