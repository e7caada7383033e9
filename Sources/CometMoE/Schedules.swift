import CometCore
import CometMPI

/// The schedules `--schedule` chooses from.
public enum ScheduleKind: String, CaseIterable, Codable, Sendable {
    /// Megatron: all-to-all-v, GEMMs, all-to-all-v, nothing overlapped.
    case sequential
    /// Tutel / FasterMoE: tokens in chunks, transfers of one chunk overlap GEMMs of another.
    case chunked
    /// Comet: tile-level overlap through symmetric windows and ready flags, layer1
    /// in column blocks as in the paper.
    case comet
    /// Comet with layer1 in rows: each landed row group's GEMM2 right after its
    /// GEMM1, pushed home at once (see `CometSchedule.Layer1`).
    case cometRows = "comet-rows"

    /// A new schedule of this kind for the layer's `group` of EP x `tensorParallel`
    /// ranks, moving rows on `link` and running on `device`'s threads (collective
    /// for comet, which allocates its window).
    func make(
        config: MoEConfig, options: ScheduleOptions, link: LinkClock, device: Device, group: Communicator, tensorParallel: Int,
        forcePutGet: Bool
    ) throws -> any MoESchedule {
        try options.validate()
        let shard = config.shard(tensorParallel: tensorParallel)
        switch self {
        case .sequential: return SequentialSchedule(config: shard, options: options, link: link, device: device)
        case .chunked: return ChunkedSchedule(config: shard, options: options, link: link, device: device)
        case .comet, .cometRows:
            return try CometSchedule(config: shard, options: options, layer1: self == .comet ? .columns : .rows, link: link,
                                     device: device, group: group, tensorParallel: tensorParallel, forcePutGet: forcePutGet)
        }
    }
}
