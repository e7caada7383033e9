import CometMPI

/// Where every routed row goes and comes from, agreed by all expert-parallel ranks.
///
/// A *row* is one (token, choice) pair: T k rows leave each rank.
/// - On its home rank, rows are kept in *send order*: by destination rank, then by
///   the destination's local expert, then by token. Each (destination, expert)
///   segment is contiguous, so one transfer moves it.
/// - On the expert rank, received rows are kept *expert-major*: by local expert,
///   then by source rank, then by token. Each expert's rows are contiguous for its
///   GEMMs, and each (expert, source) segment depends on one source only.
///
/// The plan is dropless: any distribution works, including every row to one expert,
/// experts that receive nothing and ranks that send nothing.
public struct RoutingPlan: Sendable {
    /// W: ranks in the expert-parallel group.
    public let ranks: Int
    /// This rank in the group.
    public let rank: Int
    /// E / W: experts each rank holds.
    public let expertsPerRank: Int
    public let topK: Int
    /// T: tokens on this rank.
    public let tokens: Int

    // MARK: Home side (this rank as the source of rows)

    /// Send-order row of token t's choice j, at [t * k + j].
    public let sendRow: [Int]
    /// Token of each send-order row [T k].
    public let sendToken: [Int]
    /// Rows this rank sends to (destination, local expert), at [destination * E/W + expert].
    public let sendCounts: [Int]
    /// First send-order row of each (destination, local expert) segment.
    public let sendOffsets: [Int]

    // MARK: Expert side (this rank as the destination)

    /// Rows that (source, local expert) sends here, at [source * E/W + expert].
    public let receiveCounts: [Int]
    /// Where those rows start in the source's send order.
    public let sourceOffsets: [Int]
    /// Where those rows start in this rank's expert-major receive buffer.
    public let receiveOffsets: [Int]
    /// R: rows this rank receives.
    public let receivedRows: Int

    /// Builds the plan from this rank's routing and exchanges counts with the
    /// group (one all-to-all of 2 E/W integers per rank pair). Collective.
    public init(choices: [Int], tokens: Int, topK: Int, experts: Int, group: Communicator) throws {
        let (w, perRank) = (group.size, experts / group.size)
        precondition(experts % w == 0 && choices.count == tokens * topK, "routing does not fit the group")
        ranks = w
        rank = group.rank
        expertsPerRank = perRank
        self.topK = topK
        self.tokens = tokens

        var counts = [Int](repeating: 0, count: experts)
        for expert in choices { counts[expert] += 1 }
        var offsets = [Int](repeating: 0, count: experts)
        for segment in 1..<max(experts, 1) { offsets[segment] = offsets[segment - 1] + counts[segment - 1] }
        // Global expert e = destination * E/W + local expert: segments are already in send order.
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
                let segment = destination * perRank + expert
                outgoing += [Int64(counts[segment]), Int64(offsets[segment])]
            }
        }
        let incoming = try group.allToAll(outgoing)
        var receiveCounts = [Int](repeating: 0, count: experts)
        var sourceOffsets = [Int](repeating: 0, count: experts)
        for source in 0..<w {
            for expert in 0..<perRank {
                let at = 2 * (source * perRank + expert)
                receiveCounts[source * perRank + expert] = Int(incoming[at])
                sourceOffsets[source * perRank + expert] = Int(incoming[at + 1])
            }
        }
        var receiveOffsets = [Int](repeating: 0, count: experts)
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
        let at = destination * expertsPerRank + expert
        return sendOffsets[at]..<(sendOffsets[at] + sendCounts[at])
    }

    /// Where (source, local expert)'s rows start in the source's send order.
    public func sourceOffset(source: Int, expert: Int) -> Int { sourceOffsets[source * expertsPerRank + expert] }

    /// Rows this rank sends to `destination`, all local experts together (contiguous).
    public func sendRange(destination: Int) -> Range<Int> {
        sendSegment(destination: destination, expert: 0).lowerBound
            ..< sendSegment(destination: destination, expert: expertsPerRank - 1).upperBound
    }

    /// Rows of the busiest exchange between this rank and another, in either direction.
    public var busiestPairRows: Int {
        (0..<ranks).filter { $0 != rank }.map { max(sendRange(destination: $0).count, receiveCount(source: $0)) }.max() ?? 0
    }

    /// Rows this rank receives from `source`, all experts together.
    public func receiveCount(source: Int) -> Int {
        (0..<expertsPerRank).reduce(0) { $0 + receiveCounts[source * expertsPerRank + $1] }
    }
}
