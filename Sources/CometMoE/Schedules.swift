import CometMPI

/// The schedules `--schedule` chooses from.
public enum ScheduleKind: String, CaseIterable, Codable, Sendable {
    /// Megatron: all-to-all-v, GEMMs, all-to-all-v, nothing overlapped.
    case sequential
    /// Tutel / FasterMoE: tokens in chunks, transfers of one chunk overlap GEMMs of another.
    case chunked
    /// Comet: tile-level overlap through symmetric windows and ready flags.
    case comet

    /// A new schedule of this kind for `group` (collective for comet, which allocates its window).
    public func make(config: MoEConfig, options: ScheduleOptions, group: Communicator, forcePutGet: Bool = false) throws -> any MoESchedule {
        try options.validate()
        switch self {
        case .sequential: return SequentialSchedule(config: config, options: options)
        case .chunked: return ChunkedSchedule(config: config, options: options)
        case .comet: return try CometSchedule(config: config, options: options, group: group, forcePutGet: forcePutGet)
        }
    }
}
