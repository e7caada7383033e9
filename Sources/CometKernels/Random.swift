/// SplitMix64: a small, fast, seedable generator, so that every rank draws the
/// same weights and tokens from the same seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Moves on as `count` calls of `next` would, without making their numbers.
    public mutating func skip(_ count: Int) {
        state &+= 0x9E37_79B9_7F4A_7C15 &* UInt64(count)
    }

    /// A Float uniform in [-scale, scale).
    public mutating func uniform(_ scale: Float) -> Float {
        Float(Double(next() >> 11) * 0x1p-53 * 2 - 1) * scale
    }
}
