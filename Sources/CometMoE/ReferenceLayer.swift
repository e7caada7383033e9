import CometKernels

/// The whole MoE layer in one process, over every rank's tokens: the reference
/// that every schedule's outputs and gradients are checked against.
///
/// Each rank's tokens are routed by the same router as on that rank; each expert
/// then runs once over all rows sent to it.
public final class ReferenceLayer {
    public let config: MoEConfig
    public let router: Router
    public let experts: Experts
    /// Per rank: the routing of its tokens.
    public private(set) var routings: [Routing] = []
    private let buffers: ExpertBuffers
    /// Per expert, the (rank, token, choice) of each of its rows, in buffer order.
    private var rowOwners: [[(rank: Int, token: Int, choice: Int)]] = []

    public init(config: MoEConfig, router: Router) {
        self.config = config
        self.router = router
        experts = Experts(config: config, firstExpert: 0, count: config.experts)
        buffers = ExpertBuffers(modelWidth: config.modelWidth, hiddenWidth: config.hiddenWidth, activation: config.activation)
    }

    private func expertRows(_ expert: Int) -> Range<Int> {
        let start = rowOwners[..<expert].reduce(0) { $0 + $1.count }
        return start..<(start + rowOwners[expert].count)
    }

    /// y_r [T_r, N] for every rank's x_r [T_r, N].
    public func forward(_ xs: [MatrixView]) -> [Matrix] {
        let n = config.modelWidth
        routings = xs.map { router.forward($0) }
        rowOwners = Array(repeating: [], count: config.experts)
        for (rank, routing) in routings.enumerated() {
            for token in 0..<routing.tokens {
                for choice in 0..<config.topK {
                    rowOwners[routing.choices[token * config.topK + choice]].append((rank, token, choice))
                }
            }
        }
        buffers.reserve(rows: rowOwners.reduce(0) { $0 + $1.count })
        for expert in 0..<config.experts {
            for (offset, owner) in rowOwners[expert].enumerated() {
                let row = expertRows(expert).lowerBound + offset
                (buffers.x.base + row * buffers.x.rowStride).update(from: xs[owner.rank].base + owner.token * xs[owner.rank].rowStride, count: n)
            }
            experts.forwardUp(expert, rows: expertRows(expert), buffers)
            experts.forwardDown(expert, rows: expertRows(expert), columns: 0..<n, buffers)
        }
        let ys = xs.map { Matrix(rows: $0.rows, columns: n) }
        forEachRow { expert, row, owner in
            let weight = routings[owner.rank].weights[owner.token * config.topK + owner.choice]
            let target = ys[owner.rank].view.base + owner.token * n, source = buffers.y.base + row * buffers.y.rowStride
            for j in 0..<n { target[j] += weight * source[j] }
        }
        return ys
    }

    /// dx_r [T_r, N] from dy_r, after `forward` on the same xs. Accumulates the
    /// experts' and the router's weight gradients. Every rank's load-balancing
    /// loss gets gradient `auxLossGradient`.
    public func backward(_ xs: [MatrixView], _ dys: [MatrixView], auxLossGradient: Float) -> [Matrix] {
        let (n, k) = (config.modelWidth, config.topK)
        var weightGradients = routings.map { [Float](repeating: 0, count: $0.tokens * k) }
        forEachRow { expert, row, owner in
            let weight = routings[owner.rank].weights[owner.token * k + owner.choice]
            let dy = dys[owner.rank].base + owner.token * dys[owner.rank].rowStride
            let y = buffers.y.base + row * buffers.y.rowStride, target = buffers.dy.base + row * buffers.dy.rowStride
            var dot: Float = 0
            for j in 0..<n {
                dot += dy[j] * y[j]
                target[j] = weight * dy[j]
            }
            weightGradients[owner.rank][owner.token * k + owner.choice] = dot
        }
        for expert in 0..<config.experts {
            let rows = expertRows(expert)
            experts.backwardDown(expert, rows: rows, buffers)
            experts.backwardUp(expert, rows: rows, columns: 0..<n, buffers)
            experts.accumulateDownGradient(expert, rows: rows, buffers)
            experts.accumulateUpGradient(expert, rows: rows, buffers)
        }
        let dxs = xs.map { Matrix(rows: $0.rows, columns: n) }
        forEachRow { _, row, owner in
            let target = dxs[owner.rank].view.base + owner.token * n, source = buffers.dx.base + row * buffers.dx.rowStride
            for j in 0..<n { target[j] += source[j] }
        }
        for rank in xs.indices {
            router.backward(xs[rank], routings[rank], weightGradients: weightGradients[rank],
                            auxLossGradient: auxLossGradient, inputGradient: dxs[rank].view)
        }
        return dxs
    }

    private func forEachRow(_ body: (_ expert: Int, _ row: Int, _ owner: (rank: Int, token: Int, choice: Int)) -> Void) {
        for expert in 0..<config.experts {
            let start = expertRows(expert).lowerBound
            for (offset, owner) in rowOwners[expert].enumerated() { body(expert, start + offset, owner) }
        }
    }
}
