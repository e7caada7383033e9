import CometCore
import CometKernels
import CometMPI
import CometMoE

/// The paper's MoE models (Table 2 of Comet: E, top-k, N, K), with the depth, heads and
/// vocabulary of the released models' configurations (Hugging Face config.json:
/// num_hidden_layers, num_attention_heads, vocab_size) for the end-to-end section.
struct PaperModel: Sendable {
    /// The name in tables, and on the command line (`--model`).
    let name: String, key: String
    var experts: Int, topK: Int
    let modelWidth: Int, hiddenWidth: Int
    let layers: Int, heads: Int, vocabulary: Int

    static let mixtral = PaperModel(name: "Mixtral-8x7B", key: "mixtral", experts: 8, topK: 2, modelWidth: 4096, hiddenWidth: 14336,
                                    layers: 32, heads: 32, vocabulary: 32000)
    static let qwen2 = PaperModel(name: "Qwen2-MoE-2.7B", key: "qwen2", experts: 64, topK: 4, modelWidth: 2048, hiddenWidth: 1408,
                                  layers: 24, heads: 16, vocabulary: 151_936)
    static let phi35 = PaperModel(name: "Phi-3.5-MoE", key: "phi35", experts: 16, topK: 2, modelWidth: 4096, hiddenWidth: 6400,
                                  layers: 32, heads: 32, vocabulary: 32064)
    static let all = [mixtral, qwen2, phi35]

    /// The layer with `tokens` M over `ranks` ranks (each routes M / W, attention being
    /// data parallel), routed by quotas with `imbalance`.
    func config(tokens: Int, ranks: Int, imbalance: Double = 0) -> MoEConfig {
        var config = MoEConfig()
        (config.tokensPerRank, config.modelWidth, config.hiddenWidth) = (tokens / ranks, modelWidth, hiddenWidth)
        (config.experts, config.topK, config.imbalance, config.routing) = (experts, topK, imbalance, .quotas)
        return config
    }
}

/// One schedule's device times on one layer: a forward and a backward between barriers
/// (the slowest rank's), and the forward's communication and expert GEMMs (the busiest
/// rank's), seconds; the share of the forward's communication that overlapped GEMMs
/// (all ranks'); and this rank's forward activities.
struct PaperTiming: Sendable {
    let forward: Double, backward: Double, forwardComm: Double, forwardGEMM: Double
    let overlappedFraction: Double
    let forwardActivities: [Activity]
}

/// The runs behind `comet-bench paper`: each schedule on one layer, time-only on the
/// process's modelled GPU, and comet at each candidate SM split, the best kept (the
/// paper's offline profiling for adaptive workload assignment).
struct PaperRuns {
    let world: Communicator
    let device: Device
    let link: LinkModel
    /// Comet's candidate communication SMs.
    let smCandidates: [Int]

    /// One forward and backward of `kind` with `options` on `config`, TP `tp`, as
    /// `comet-bench layer` measures them. Collective.
    func time(_ kind: ScheduleKind, _ options: ScheduleOptions, _ config: MoEConfig, tp: Int) throws -> PaperTiming {
        let layer = try MoELayer(config: config, group: world, tensorParallel: tp, schedule: kind, options: options, link: link,
                                 device: device)
        let (t, n) = (config.tokensPerRank, config.modelWidth)
        let inputs = LayerInputs(x: Matrix(rows: t, columns: n), y: Matrix(rows: t, columns: n), dy: Matrix(rows: t, columns: n),
                                 dx: Matrix(rows: t, columns: n))
        let sample = try LayerBenchOptions.measure(layer, world, inputs, rateOnClock: true)
        try layer.release()
        let forward = sample.activities.filter { $0.phase == "forward" }.map(\.activity)
        var overlap = [Timeline.overlapSeconds(.comm, .gemm, in: forward), Timeline.busySeconds(.comm, in: forward)]
        try world.allReduce(&overlap, .sum)
        return PaperTiming(forward: sample.forward, backward: sample.backward, forwardComm: sample.forwardComm,
                           forwardGEMM: sample.forwardGEMM, overlappedFraction: overlap[0] / max(overlap[1], 1e-12),
                           forwardActivities: forward)
    }

    /// Every schedule on `config` at TP `tp`: sequential, chunked at `chunks`, and comet
    /// and comet-rows at each candidate split; labelled as `PaperRow.setting` says. Collective.
    func schedules(_ config: MoEConfig, tp: Int, chunks: [Int] = [2, 4, 8]) throws -> [(kind: ScheduleKind, setting: Int, PaperTiming)] {
        var options = ScheduleOptions()
        var runs = [(kind: ScheduleKind.sequential, setting: 0, try time(.sequential, options, config, tp: tp))]
        for d in chunks {
            options.chunks = d
            runs.append((.chunked, d, try time(.chunked, options, config, tp: tp)))
        }
        options.chunks = 1
        for kind in [ScheduleKind.comet, .cometRows] {
            for sms in smCandidates {
                options.commSMs = sms
                runs.append((kind, sms, try time(kind, options, config, tp: tp)))
            }
        }
        return runs
    }
}
