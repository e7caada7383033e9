import CometKernels
import CometMPI

/// Where every routed row goes and comes from, agreed by the W = EP x TP ranks of
/// the layer's group (group rank = tp + TP ep).
///
/// A *row* is one (token, choice) pair: T k rows leave each rank.
/// - Experts are sharded over the EP index; each expert's K dimension over the TP
///   index. A row goes to *every* TP rank of its expert's EP index (the dispatch
///   with the all-gather inside TP fused into it), and each of them sends back a
///   partial result that the home rank sums (the reduce-scatter fused into the
///   combine). With TP = 1 this is plain expert parallelism.
/// - On its home rank, rows are kept in *send order*: by destination EP index, then
///   by the destination's local expert, then by token. Each (EP index, expert)
///   segment is contiguous, so one transfer moves it to each of its TP ranks.
///   Partial results come back into one region of T k rows per TP index.
/// - On the expert rank, received rows are kept *expert-major*: by local expert,
///   then by source rank, then by token. Each expert's rows are contiguous for its
///   GEMMs, and each (expert, source) segment depends on one source only.
///
/// The plan is dropless: any distribution works, including every row to one expert,
/// experts that receive nothing and ranks that send nothing.
public struct RoutingPlan: Sendable {
    /// W = EP x TP: ranks in the layer's group.
    public let ranks: Int
    /// This rank in the group.
    public let rank: Int
    /// TP: ranks that share each expert's K dimension.
    public let tensorParallel: Int
    /// E / EP: experts each rank holds (a K-shard of each when TP > 1).
    public let expertsPerRank: Int
    public let topK: Int
    /// T: tokens on this rank.
    public let tokens: Int

    // MARK: Home side (this rank as the source of rows)

    /// Send-order row of token t's choice j, at [t * k + j].
    public let sendRow: [Int]
    /// Token of each send-order row [T k].
    public let sendToken: [Int]
    /// Rows this rank sends to (EP index, local expert), at [EP index * E/EP + expert] (the global expert).
    public let sendCounts: [Int]
    /// First send-order row of each (EP index, local expert) segment.
    public let sendOffsets: [Int]

    // MARK: Expert side (this rank as the destination)

    /// Rows that (source, local expert) sends here, at [source * E/EP + expert].
    public let receiveCounts: [Int]
    /// Where those rows start in the source's send order.
    public let sourceOffsets: [Int]
    /// Where those rows start in this rank's expert-major receive buffer.
    public let receiveOffsets: [Int]
    /// R: rows this rank receives.
    public let receivedRows: Int

    /// Builds the plan from this rank's routing and exchanges counts with the
    /// group (one all-to-all of 2 E/EP integers per rank pair). Collective.
    public init(choices: [Int], tokens: Int, topK: Int, experts: Int, group: Communicator, tensorParallel: Int = 1) throws {
        try self.init(choices: choices, tokens: tokens, topK: topK, experts: experts, ranks: group.size, rank: group.rank,
                      tensorParallel: tensorParallel, exchange: { try group.allToAll($0) })
    }

    /// The plan of rank `rank` of `ranks`, with `exchange` standing for the group's
    /// all-to-all of equal blocks (one per rank, in rank order).
    init(
        choices: [Int], tokens: Int, topK: Int, experts: Int, ranks w: Int, rank: Int, tensorParallel: Int,
        exchange: ([Int64]) throws -> [Int64]
    ) rethrows {
        precondition(w % tensorParallel == 0 && experts % (w / tensorParallel) == 0 && choices.count == tokens * topK,
                     "routing does not fit the group")
        let perRank = experts / (w / tensorParallel)
        ranks = w
        self.rank = rank
        self.tensorParallel = tensorParallel
        expertsPerRank = perRank
        self.topK = topK
        self.tokens = tokens

        var counts = [Int](repeating: 0, count: experts)
        for expert in choices { counts[expert] += 1 }
        var offsets = [Int](repeating: 0, count: experts)
        for segment in 1..<max(experts, 1) { offsets[segment] = offsets[segment - 1] + counts[segment - 1] }
        // Global expert e = EP index * E/EP + local expert: segments are already in send order.
        sendCounts = counts
        sendOffsets = offsets
        var next = offsets
        var rowOf = [Int](repeating: 0, count: choices.count)
        var tokenOf = [Int](repeating: 0, count: choices.count)
        for (slot, expert) in choices.enumerated() {
            rowOf[slot] = next[expert]
            tokenOf[next[expert]] = slot / topK
            next[expert] += 1
        }
        sendRow = rowOf
        sendToken = tokenOf

        // Tell each destination how many rows it gets from here and where they start.
        var outgoing = [Int64]()
        outgoing.reserveCapacity(2 * experts)
        for destination in 0..<w {
            for expert in 0..<perRank {
                let segment = destination / tensorParallel * perRank + expert
                outgoing += [Int64(counts[segment]), Int64(offsets[segment])]
            }
        }
        let incoming = try exchange(outgoing)
        var receiveCounts = [Int](repeating: 0, count: w * perRank)
        var sourceOffsets = [Int](repeating: 0, count: w * perRank)
        for source in 0..<w {
            for expert in 0..<perRank {
                let at = 2 * (source * perRank + expert)
                receiveCounts[source * perRank + expert] = Int(incoming[at])
                sourceOffsets[source * perRank + expert] = Int(incoming[at + 1])
            }
        }
        var receiveOffsets = [Int](repeating: 0, count: w * perRank)
        var total = 0
        for expert in 0..<perRank {
            for source in 0..<w {
                receiveOffsets[source * perRank + expert] = total
                total += receiveCounts[source * perRank + expert]
            }
        }
        self.receiveCounts = receiveCounts
        self.sourceOffsets = sourceOffsets
        self.receiveOffsets = receiveOffsets
        receivedRows = total
    }

    /// Rows of local expert `expert` in the receive buffer.
    public func expertRows(_ expert: Int) -> Range<Int> {
        let start = receiveOffsets[expert]  // source 0 comes first
        let end = expert + 1 < expertsPerRank ? receiveOffsets[expert + 1] : receivedRows
        return start..<end
    }

    /// Rows of (source, local expert) in the receive buffer.
    public func receiveSegment(source: Int, expert: Int) -> Range<Int> {
        let at = source * expertsPerRank + expert
        return receiveOffsets[at]..<(receiveOffsets[at] + receiveCounts[at])
    }

    /// Rows of (destination, local expert) in this rank's send order.
    public func sendSegment(destination: Int, expert: Int) -> Range<Int> {
        let at = destination / tensorParallel * expertsPerRank + expert
        return sendOffsets[at]..<(sendOffsets[at] + sendCounts[at])
    }

    /// Where (source, local expert)'s rows start in the source's send order.
    public func sourceOffset(source: Int, expert: Int) -> Int { sourceOffsets[source * expertsPerRank + expert] }

    /// Rows this rank sends to `destination`, all local experts together (contiguous).
    public func sendRange(destination: Int) -> Range<Int> {
        sendSegment(destination: destination, expert: 0).lowerBound
            ..< sendSegment(destination: destination, expert: expertsPerRank - 1).upperBound
    }

    /// T k: rows this rank sends out, and the size of each TP index's region of partial results.
    public var routedRows: Int { tokens * topK }

    /// The region of partial results that `rank`'s pushes land in at home: [TP x T k] rows, one region per TP index.
    public func returnSlot(from rank: Int) -> Int { rank % tensorParallel }

    /// Rows this rank's busiest link queue carries in one exchange: its busiest
    /// exchange with another rank, in either direction (`perPeer`), or all it sends or
    /// receives, whichever is more (`perPort`).
    public func busiestLinkRows(_ queues: LinkModel.Queues) -> Int {
        let others = (0..<ranks).filter { $0 != rank }
        let (sent, received) = (others.map { sendRange(destination: $0).count }, others.map { receiveCount(source: $0) })
        return switch queues {
        case .perPeer: zip(sent, received).map { max($0, $1) }.max() ?? 0
        case .perPort: max(sent.reduce(0, +), received.reduce(0, +))
        }
    }

    /// Rows this rank receives from `source`, all experts together.
    public func receiveCount(source: Int) -> Int {
        (0..<expertsPerRank).reduce(0) { $0 + receiveCounts[source * expertsPerRank + $1] }
    }
}

extension RoutingPlan {
    /// Runs `body`, work on `rows` of local expert `expert` (and `columns` of its `width`
    /// output columns), as a piece of one kernel over every local expert's rows and all
    /// columns (`FusedKernel`): a grouped GEMM, as Megatron-Core runs its experts (the
    /// paper's Megatron-Cutlass) and Comet's fused kernels tile them, whose communication
    /// holds `heldSMs` of a GPU's SMs (comet's split; 0 for the others).
    func grouped(
        _ expert: Int, _ rows: Range<Int>, _ columns: Range<Int>? = nil, of width: Int = 1, heldSMs: Int = 0, _ body: () -> Double
    ) -> Double {
        FusedKernel.piece(rows: rows.count, ofRows: receivedRows, columns: columns?.count ?? 1,
                          ofColumns: columns == nil ? 1 : width, heldSMs: heldSMs, body)
    }
}
