import CometCore
import CometKernels
import CometMPI
import CometMoE
import Foundation

/// Everything a training run is made of, with the embedded default in one place.
/// It is saved to and loaded from JSON (`--config`); a key left out keeps its
/// default, and an unknown key is an error.
public struct TrainConfig: Codable, Sendable, Equatable {
    // Model
    /// C: model width.
    public var modelWidth = 64
    /// L: transformer blocks.
    public var layers = 2
    public var heads = 4
    /// T: tokens per sequence.
    public var sequenceLength = 64
    /// E, top-k, K and activation of every block's MoE FFN.
    public var experts = 8
    public var topK = 2
    public var expertWidth = 128
    public var activation: Activation = .gelu
    /// Weight of the load-balancing loss in the objective.
    public var auxLossWeight: Float = 0.01
    /// Whether the gate's scores or exact quotas choose each token's experts (quotas:
    /// what a time-only run routes by).
    public var routing: RoutingSource = .learned

    // Training
    public var steps = 300
    /// B: sequences per step over all ranks.
    public var globalBatch = 32
    public var optimizer = OptimizerConfig()
    public var evalEvery = 50
    /// Sequences in each evaluation.
    public var evalSequences = 64
    public var checkpointEvery = 100
    public var seed: UInt64 = 1

    // Built-in data: sparse Markov sources (ignored with a data file).
    public var markovSources = 4
    public var markovTokens = 48
    public var markovSuccessors = 3

    // Parallelism
    public var schedule: ScheduleKind = .comet
    public var scheduleOptions = ScheduleOptions()

    public init() {}

    /// B / W: the sequences each of `ranks` ranks processes per step.
    public func sequencesPerRank(ranks: Int) -> Int { globalBatch / ranks }

    /// The MoE layer every block uses, for `tokensPerRank` tokens.
    public func moe(tokensPerRank: Int) -> MoEConfig {
        var config = MoEConfig()
        (config.tokensPerRank, config.modelWidth, config.hiddenWidth) = (tokensPerRank, modelWidth, expertWidth)
        (config.experts, config.topK, config.activation, config.seed, config.routing) = (experts, topK, activation, seed, routing)
        return config
    }

    /// Checks the configuration for a job of `ranks` ranks with `expertParallel` of them
    /// sharing out the experts and `tensorParallel` sharing each expert's K.
    public func validate(ranks: Int, expertParallel: Int, tensorParallel: Int = 1) throws {
        let positive: [(String, Int)] = [
            ("modelWidth", modelWidth), ("layers", layers), ("heads", heads), ("sequenceLength", sequenceLength),
            ("experts", experts), ("topK", topK), ("expertWidth", expertWidth), ("steps", steps),
            ("globalBatch", globalBatch), ("evalEvery", evalEvery), ("evalSequences", evalSequences),
            ("checkpointEvery", checkpointEvery), ("markovSources", markovSources), ("markovTokens", markovTokens),
            ("markovSuccessors", markovSuccessors),
        ]
        for (name, value) in positive where value < 1 { throw InputError("\(name) must be at least 1, got \(value)") }
        if modelWidth % heads != 0 { throw InputError("modelWidth (\(modelWidth)) must be a multiple of heads (\(heads))") }
        if topK > experts { throw InputError("topK (\(topK)) cannot exceed experts (\(experts))") }
        if experts % expertParallel != 0 {
            throw InputError("\(experts) experts cannot be shared out evenly over \(expertParallel) expert-parallel ranks")
        }
        if expertWidth % tensorParallel != 0 {
            throw InputError("expertWidth (\(expertWidth)) cannot be sharded evenly over \(tensorParallel) tensor-parallel ranks")
        }
        if globalBatch % ranks != 0 {
            throw InputError("globalBatch (\(globalBatch)) must be a multiple of the \(ranks) ranks")
        }
        if evalSequences % globalBatch != 0 {
            throw InputError("evalSequences (\(evalSequences)) must be a multiple of globalBatch (\(globalBatch))")
        }
        if markovSuccessors > markovTokens { throw InputError("markovSuccessors cannot exceed markovTokens") }
        if !(optimizer.learningRate > 0) { throw InputError("learning rate must be positive, got \(optimizer.learningRate)") }
        if optimizer.warmupSteps < 0 || !(optimizer.gradientClip > 0) || optimizer.weightDecay < 0 {
            throw InputError("warmupSteps and weightDecay must not be negative and gradientClip must be positive")
        }
        if !(auxLossWeight >= 0) { throw InputError("auxLossWeight must not be negative") }
        try scheduleOptions.validate()
    }

    /// Reads a JSON configuration over the defaults; a file that does not parse (with
    /// the line and column where it stops), an unknown key or a value of the wrong type
    /// gets one clear message.
    public static func load(from path: String) throws -> TrainConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("cannot read the configuration \(path): it does not exist or is not readable")
        }
        let parsed: Any
        do {
            parsed = try JSONText.parse(data)
        } catch {
            throw InputError("the configuration \(path) does not parse as JSON: \(error)")
        }
        guard let given = parsed as? [String: Any] else {
            throw InputError("the configuration \(path) is not a JSON object")
        }
        let defaults = try JSONSerialization.jsonObject(with: TrainConfig().json()) as! [String: Any]
        let merged = try merge(given, over: defaults, at: "")
        do {
            return try JSONDecoder().decode(TrainConfig.self, from: JSONSerialization.data(withJSONObject: merged))
        } catch let error as DecodingError {
            throw InputError("the configuration \(path) is not valid: \(JSONText.describe(error))")
        }
    }

    /// `given` laid over `defaults`, object by object; keys must exist in the defaults.
    private static func merge(_ given: [String: Any], over defaults: [String: Any], at prefix: String) throws -> [String: Any] {
        var result = defaults
        for (key, value) in given {
            guard let standard = defaults[key] else {
                throw InputError("unknown configuration key \(prefix)\(key); known keys: \(defaults.keys.sorted().joined(separator: ", "))")
            }
            if let inner = value as? [String: Any], let innerDefaults = standard as? [String: Any] {
                result[key] = try merge(inner, over: innerDefaults, at: "\(prefix)\(key).")
            } else {
                result[key] = value
            }
        }
        return result
    }

    /// Pretty JSON, keys sorted.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
