import Synchronization

/// The weight gradient that comet's backward accumulates as rows land (dW2 += hᵀ dy
/// in layer0), summed over fixed groups of each expert's rows in receive-buffer
/// order, whatever order and grouping the GEMM threads computed the rows in.
///
/// A float sum depends on its order. The GEMM threads take landed rows as they
/// come (`LandingBoard`), so summing each taken group at once made the gradient,
/// and training, depend on timing; with fixed groups summed in order it does not,
/// on any link and either clock. A group is summed as soon as it and every group
/// before it are computed, by the thread that completes it, so the sums still
/// overlap the pulls.
final class OrderedGradient: Sendable {
    private struct Expert {
        /// Its rows, cut into the groups that are summed one by one.
        let groups: [Range<Int>]
        /// Rows computed in each group.
        var computed: [Int]
        /// The first group not summed yet.
        var next = 0
        /// A thread is summing this expert's groups.
        var busy = false
    }

    private let experts: Mutex<[Expert]>

    /// Groups of `groupRows` rows over each of `expertRows`.
    init(expertRows: [Range<Int>], groupRows: Int) {
        experts = Mutex(expertRows.map { rows in
            let groups = tiles(rows, size: groupRows)
            return Expert(groups: groups, computed: [Int](repeating: 0, count: groups.count))
        })
    }

    /// Records that `rows` of `expert` are computed, then runs `sum` on every group
    /// that is now due, in order (none while another thread sums this expert's).
    func computed(_ rows: Range<Int>, expert: Int, sum: (Range<Int>) -> Void) {
        var due = claim(expert) { state in
            for (index, group) in state.groups.enumerated() where group.overlaps(rows) {
                state.computed[index] += group.clamped(to: rows).count
            }
        }
        while !due.isEmpty {
            for group in due { sum(group) }
            due = claim(expert) { $0.busy = false }
        }
    }

    /// Applies `change` to `expert`'s state and takes the groups now due, if no other
    /// thread is summing them.
    private func claim(_ expert: Int, _ change: (inout Expert) -> Void) -> [Range<Int>] {
        experts.withLock { all in
            change(&all[expert])
            guard !all[expert].busy else { return [] }
            var due: [Range<Int>] = []
            while all[expert].next < all[expert].groups.count,
                  all[expert].computed[all[expert].next] == all[expert].groups[all[expert].next].count {
                due.append(all[expert].groups[all[expert].next])
                all[expert].next += 1
            }
            all[expert].busy = !due.isEmpty
            return due
        }
    }
}
