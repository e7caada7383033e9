import CometCore
import CometKernels
import CometMPI

/// The shape of one MoE layer and how it is run.
///
/// Notation (as in the Comet paper): T tokens per rank, N = model width,
/// K = expert FFN width, E experts, top-k choices per token, W ranks.
public struct MoEConfig: Codable, Sendable, Equatable {
    /// T: tokens each rank routes.
    public var tokensPerRank = 1024
    /// N: model (embedding) width.
    public var modelWidth = 512
    /// K: expert FFN width.
    public var hiddenWidth = 1024
    /// E: experts, sharded over the expert-parallel ranks.
    public var experts = 8
    /// Experts each token is sent to.
    public var topK = 2
    public var activation: Activation = .gelu
    /// Standard deviation of the per-expert share of tokens the router aims for
    /// (0: balanced; 0.032 is typical in production).
    public var imbalance = 0.0
    /// Whether the gate's scores or exact quotas choose each token's experts.
    public var routing: RoutingSource = .learned
    /// Seed for weights, router bias and tokens.
    public var seed: UInt64 = 1

    public init() {}

    /// Experts each expert-parallel rank holds.
    public func expertsPerRank(expertParallel: Int) -> Int { experts / expertParallel }

    /// The shape of what one rank computes when each expert's K is sharded over
    /// `tensorParallel` ranks: K / TP hidden columns.
    public func shard(tensorParallel: Int) -> MoEConfig {
        var shard = self
        shard.hiddenWidth = hiddenWidth / tensorParallel
        return shard
    }

    /// Checks the configuration for `expertParallel` x `tensorParallel` ranks.
    public func validate(expertParallel: Int, tensorParallel: Int = 1) throws {
        for (name, value) in [("tokens per rank", tokensPerRank), ("N (model width)", modelWidth),
                              ("K (hidden width)", hiddenWidth), ("E (experts)", experts), ("top-k", topK)] where value < 1 {
            throw InputError("\(name) must be at least 1, got \(value)")
        }
        if topK > experts { throw InputError("top-k (\(topK)) cannot exceed the number of experts (\(experts))") }
        if experts % expertParallel != 0 {
            throw InputError("\(experts) experts cannot be shared out evenly over \(expertParallel) expert-parallel ranks")
        }
        if hiddenWidth % tensorParallel != 0 {
            throw InputError("K (hidden width \(hiddenWidth)) cannot be sharded evenly over \(tensorParallel) tensor-parallel ranks")
        }
        if !(0...0.5).contains(imbalance) { throw InputError("imbalance must be between 0 and 0.5, got \(imbalance)") }
        if routing == .learned, ModelledKernels.isTimeOnly {
            throw InputError("a time-only run routes by quotas: its gate computes no scores to choose by (drop --routing learned)")
        }
    }
}
