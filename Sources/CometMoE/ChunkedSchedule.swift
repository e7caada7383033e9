import CometCore
import CometKernels
import CometMPI

/// The Tutel / FasterMoE baseline: each rank's tokens are cut into d chunks,
/// each routed as a small MoE layer of its own. One communicator thread moves
/// chunk after chunk with all-to-all-v while the GEMM threads compute the chunk
/// that has already arrived: dispatch(c+1) and combine(c-1) overlap GEMM(c).
public final class ChunkedSchedule: MoESchedule {
    public let name = "chunked"
    public var tiling: ScheduleTiling { ScheduleTiling(chunks: options.chunks) }
    /// One communicator thread; the other engines run the GEMMs.
    public let engines: EngineSplit
    let options: ScheduleOptions
    let link: LinkClock
    let device: Device

    /// One chunk's buffers, reused from call to call.
    final class ChunkBuffers: @unchecked Sendable {
        let send: RowBuffer, returned: RowBuffer, wire: RowBuffer
        let expert: ExpertBuffers

        init(config: MoEConfig) {
            let n = config.modelWidth
            (send, returned, wire) = (RowBuffer(columns: n), RowBuffer(columns: n), RowBuffer(columns: n))
            expert = ExpertBuffers(modelWidth: n, hiddenWidth: config.hiddenWidth, activation: config.activation)
        }
    }

    /// One chunk of a layer call: its tokens, plan and buffers, kept from forward to backward.
    final class Chunk: @unchecked Sendable {
        let tokens: Range<Int>
        let plan: RoutingPlan
        let weights: [Float]
        let send: MatrixView, returned: MatrixView, wire: MatrixView
        let buffers: ExpertBuffers

        init(tokens: Range<Int>, plan: RoutingPlan, weights: [Float], buffers: ChunkBuffers) {
            self.tokens = tokens
            self.plan = plan
            self.weights = weights
            send = buffers.send.rows(plan.tokens * plan.topK)
            returned = buffers.returned.rows(plan.tensorParallel * plan.routedRows)
            wire = buffers.wire.rows(plan.receivedRows)
            buffers.expert.reserve(rows: plan.receivedRows)
            self.buffers = buffers.expert
        }
    }

    private var chunks: [Chunk] = []
    private let storage: [ChunkBuffers]

    public init(config: MoEConfig, options: ScheduleOptions, link: LinkClock, device: Device) {
        (self.options, self.link, self.device) = (options, link, device)
        engines = options.engines(for: .chunked)
        storage = (0..<options.chunks).map { _ in ChunkBuffers(config: config) }
    }

    public func forward(_ x: MatrixView, _ call: LayerCall, into y: MatrixView) throws {
        let k = call.plan.topK, link = self.link
        chunks = try call.timeline.record(.comm, thread: 0, "chunk plans") {
            try tiles(0..<call.plan.tokens, size: (call.plan.tokens + options.chunks - 1) / options.chunks)
                .padded(to: options.chunks)
                .enumerated().map { index, tokens in
                    let slots = (tokens.lowerBound * k)..<(tokens.upperBound * k)
                    let plan = try RoutingPlan(choices: Array(call.routing.choices[slots]), tokens: tokens.count, topK: k,
                                               experts: call.routing.experts, group: call.group,
                                               tensorParallel: call.plan.tensorParallel)
                    return Chunk(tokens: tokens, plan: plan, weights: Array(call.routing.weights[slots]), buffers: storage[index])
                }
        }
        try pipeline(
            call,
            send: { chunk in
                HomeRows.pack(x.rows(chunk.tokens), chunk.plan, rows: 0..<(chunk.plan.tokens * k), into: chunk.send)
                try AllToAll.dispatch(chunk.send, chunk.plan, group: call.group, link: link, staging: chunk.wire, into: chunk.buffers.x)
            },
            tasks: { chunk in
                (0..<chunk.plan.expertsPerRank).map { expert in
                    { (experts: Experts) in
                        let rows = chunk.plan.expertRows(expert)
                        return chunk.plan.grouped(expert, rows) {
                            experts.forwardUp(expert, rows: rows, chunk.buffers)
                                + experts.forwardDown(expert, rows: rows, columns: 0..<chunk.buffers.modelWidth, chunk.buffers)
                        }
                    }
                }
            },
            receive: { chunk in
                try AllToAll.combine(chunk.buffers.y, chunk.plan, group: call.group, link: link, staging: chunk.wire, into: chunk.returned)
                HomeRows.reduce(chunk.returned, chunk.plan, weights: chunk.weights, columns: 0..<x.columns, into: y.rows(chunk.tokens))
            })
    }

    public func backward(_ dy: MatrixView, _ call: LayerCall, into dx: MatrixView) throws -> [Float] {
        var weightGradients = [Float]()
        let link = self.link
        for chunk in chunks {
            weightGradients += HomeRows.weightGradients(dy.rows(chunk.tokens), chunk.returned, chunk.plan)
        }
        try pipeline(
            call,
            send: { chunk in
                HomeRows.packScaled(dy.rows(chunk.tokens), chunk.plan, weights: chunk.weights, into: chunk.send)
                try AllToAll.dispatch(chunk.send, chunk.plan, group: call.group, link: link, staging: chunk.wire, into: chunk.buffers.dy)
            },
            tasks: { chunk in
                (0..<chunk.plan.expertsPerRank).map { expert in
                    { (experts: Experts) in
                        let rows = chunk.plan.expertRows(expert)
                        return chunk.plan.grouped(expert, rows) {
                            experts.backwardDown(expert, rows: rows, chunk.buffers)
                                + experts.backwardUp(expert, rows: rows, columns: 0..<chunk.buffers.modelWidth, chunk.buffers)
                                + experts.accumulateDownGradient(expert, rows: rows, chunk.buffers)
                                + experts.accumulateUpGradient(expert, rows: rows, chunk.buffers)
                        }
                    }
                }
            },
            receive: { chunk in
                try AllToAll.combine(chunk.buffers.dx, chunk.plan, group: call.group, link: link, staging: chunk.wire, into: chunk.returned)
                HomeRows.reduce(chunk.returned, chunk.plan, weights: nil, columns: 0..<dy.columns, into: dx.rows(chunk.tokens))
            })
        return weightGradients
    }

    /// Nothing is shared between ranks: the buffers go with the object.
    public func release() {}

    /// Thread 0 sends chunk 0 and 1, then for each chunk c waits for its GEMMs,
    /// receives it and sends chunk c + 2; threads 1... run each chunk's tasks as
    /// soon as it has arrived. Tasks of one chunk touch different experts, and all
    /// GEMM threads finish a chunk before any starts the next.
    private func pipeline(
        _ call: LayerCall,
        send: @escaping @Sendable (Chunk) throws -> Void,
        tasks: @escaping @Sendable (Chunk) -> [@Sendable (Experts) -> Double],
        receive: @escaping @Sendable (Chunk) throws -> Void
    ) throws {
        let chunks = self.chunks, timeline = call.timeline, timeout = call.group.waitTimeout, clock = device.clock
        let gemmThreads = engines.gemm
        let arrived = ThreadFlag(), computed = ThreadFlag()
        let work = chunks.map(tasks)
        let counters = work.map { TaskCounter(count: $0.count) }
        let finished = chunks.map { _ in ThreadFlag() }
        try device.workers.run(1 + gemmThreads) { thread in
            if thread == 0 {
                for c in 0..<min(2, chunks.count) {
                    try timeline.record(.comm, thread: 1, "dispatch chunk \(c)") { try send(chunks[c]) }
                    arrived.raise(to: c + 1, at: clock.now())
                }
                for c in chunks.indices {
                    computed.wait(toReach: c + 1, on: clock, timeout: timeout, "GEMMs of chunk \(c)")
                    try timeline.record(.comm, thread: 1, "combine chunk \(c)") { try receive(chunks[c]) }
                    if c + 2 < chunks.count {
                        try timeline.record(.comm, thread: 1, "dispatch chunk \(c + 2)") { try send(chunks[c + 2]) }
                        arrived.raise(to: c + 3, at: clock.now())
                    }
                }
            } else {
                for c in chunks.indices {
                    arrived.wait(toReach: c + 1, on: clock, timeout: timeout, "dispatch of chunk \(c)")
                    while let task = counters[c].take() {
                        timeline.recordGEMM(thread: thread + 1, "chunk \(c) expert \(task)") { work[c][task](call.experts) }
                        if finished[c].add(1) == work[c].count { computed.raise(to: c + 1, at: clock.now()) }
                    }
                    computed.wait(toReach: c + 1, on: clock, timeout: timeout, "the other GEMM threads on chunk \(c)")
                }
            }
        }
    }
}

extension Array where Element == Range<Int> {
    /// Appends empty ranges until there are `count`, so every rank makes as many chunks.
    func padded(to count: Int) -> [Range<Int>] {
        let end = last?.upperBound ?? 0
        return self + Array(repeating: end..<end, count: Swift.max(0, count - self.count))
    }
}
