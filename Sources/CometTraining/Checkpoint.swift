import CometCore
import CometKernels
import CometMPI
import CometMoE
import Foundation

/// A training checkpoint as one safetensors file: every weight under its name
/// (readable by Python's safetensors), AdamW's moments as `optimizer.m.NAME` and
/// `optimizer.v.NAME`, the step as `optimizer.step`, and the configuration as JSON
/// in the metadata. Rank 0 writes it atomically; every rank reads it on resume.
enum Checkpoint {
    static let fileName = "checkpoint.safetensors"

    /// Gathers every rank's tensors and writes them from rank 0. Collective.
    static func write(_ model: MoETransformer, _ optimizer: AdamW, config: TrainConfig, to directory: URL) throws {
        let world = model.groups.world, parameters = model.parameters
        let sharded = model.replicatedCount..<parameters.count
        // Every rank's shard of weights and moments, in rank order (equal sizes on every rank).
        let local = Array(parameters.values[sharded]) + Array(optimizer.firstMoment[sharded]) + Array(optimizer.secondMoment[sharded])
        let gathered = try world.allGather(local)
        let names = try world.allGather(shardNames(model))
        guard world.rank == 0 else { return }
        var tensors: [Safetensors.Tensor] = []
        var moments: [Safetensors.Tensor] = []
        func add(_ name: String, _ shape: [Int], values: some Collection<Float>, m: some Collection<Float>, v: some Collection<Float>) {
            tensors.append(Safetensors.Tensor(name: name, shape: shape, values: .float32(Array(values))))
            moments.append(Safetensors.Tensor(name: "optimizer.m.\(name)", shape: shape, values: .float32(Array(m))))
            moments.append(Safetensors.Tensor(name: "optimizer.v.\(name)", shape: shape, values: .float32(Array(v))))
        }
        for entry in parameters.entries where entry.replicated {
            let range = entry.offset..<(entry.offset + entry.count)
            add(entry.name, entry.shape, values: parameters.values[range], m: optimizer.firstMoment[range], v: optimizer.secondMoment[range])
        }
        // Each expert once, whole: its K-shards from the TP ranks of the first data-parallel
        // replica, put together. Every rank's shard has the same layout (same shapes in
        // the same order); only the expert ids and the shard index differ.
        let layout = model.groups.layout, entries = shardEntries(model), shard = sharded.count
        var holders: [Int64: [(rank: Int, position: Int)]] = [:]
        for rank in 0..<world.size where layout.coordinates(of: rank).dp == 0 {
            for position in entries.indices { holders[names[rank * entries.count + position], default: []].append((rank, position)) }
        }
        for id in holders.keys.sorted() {
            let parts = holders[id]!.sorted { layout.coordinates(of: $0.rank).tp < layout.coordinates(of: $1.rank).tp }
            let entry = entries[parts[0].position]
            let whole = (0..<3).map { moment in
                assemble(parts.map { part -> ArraySlice<Float> in
                    let start = part.rank * 3 * shard + moment * shard + entry.offset - model.replicatedCount
                    return gathered[start..<(start + entry.count)]
                }, shardShape: entry.shape, isDown: id & 1 == 1, config: config)
            }
            add(expertName(id), whole[0].shape, values: whole[0].values, m: whole[1].values, v: whole[2].values)
        }
        tensors += moments
        tensors.append(Safetensors.Tensor(name: "optimizer.step", shape: [1], values: .int64([Int64(optimizer.step)])))
        let metadata = ["format": "pt", "comet.config": String(decoding: try config.json(), as: UTF8.self)]
        try Safetensors.write(tensors, metadata: metadata, to: directory.appendingPathComponent(fileName))
    }

    /// Loads weights, moments and step for this rank from `directory`'s checkpoint,
    /// after checking that it matches the model. Every rank reads the file.
    static func read(into model: MoETransformer, _ optimizer: AdamW, from directory: URL) throws {
        let url = directory.appendingPathComponent(fileName)
        let file: (tensors: [String: Safetensors.Tensor], metadata: [String: String])
        do {
            file = try Safetensors.read(from: url)
        } catch let error as Safetensors.FormatError {
            throw InputError("the checkpoint \(url.path) is corrupt or truncated: \(error.description)")
        } catch {
            throw InputError("cannot read the checkpoint \(url.path): it does not exist or is not readable")
        }
        let parameters = model.parameters
        for entry in parameters.entries {
            let name = entry.name
            for (tensorName, target) in [(name, parameters.values), ("optimizer.m.\(name)", optimizer.firstMoment),
                                         ("optimizer.v.\(name)", optimizer.secondMoment)] {
                guard let tensor = file.tensors[tensorName] else {
                    throw InputError("the checkpoint \(url.path) does not match this model: it has no tensor \(tensorName)")
                }
                let shape = wholeShape(entry, tensorParallel: model.groups.layout.tensorParallel)
                guard tensor.shape == shape, case .float32(var values) = tensor.values else {
                    throw InputError("the checkpoint \(url.path) does not match this model: \(tensorName) has shape \(tensor.shape), "
                        + "the model needs \(shape)")
                }
                guard shape != entry.shape else {
                    _ = UnsafeMutableBufferPointer(rebasing: target[entry.offset..<(entry.offset + entry.count)]).update(fromContentsOf: values)
                    continue
                }
                // A K-shard of a whole expert tensor.
                let experts = model.moe[Int(expertID(name) >> 32)].experts
                let local = MatrixView(base: target.baseAddress! + entry.offset, rows: entry.shape[0], columns: entry.shape[1])
                values.withUnsafeMutableBufferPointer { buffer in
                    let whole = MatrixView(buffer, rows: shape[0], columns: shape[1])
                    if expertID(name) & 1 == 1 { experts.copyShard(ofDown: whole, into: local) } else { experts.copyShard(ofUp: whole, into: local) }
                }
            }
        }
        guard case .int64(let step)? = file.tensors["optimizer.step"]?.values, let first = step.first else {
            throw InputError("the checkpoint \(url.path) has no optimizer.step")
        }
        optimizer.step = Int(first)
    }

    /// The shape a tensor has in the checkpoint: whole experts, whatever the layout.
    private static func wholeShape(_ entry: ParameterSet.Entry, tensorParallel: Int) -> [Int] {
        guard !entry.replicated, tensorParallel > 1 else { return entry.shape }
        return expertID(entry.name) & 1 == 1 ? [entry.shape[0] * tensorParallel, entry.shape[1]]
                                              : [entry.shape[0], entry.shape[1] * tensorParallel]
    }

    /// One whole expert tensor from its K-shards (in shard order; see `Experts.upColumns`).
    private static func assemble(_ shards: [ArraySlice<Float>], shardShape: [Int], isDown: Bool, config: TrainConfig)
        -> (shape: [Int], values: [Float]) {
        let count = shards.count
        guard count > 1 else { return (shardShape, Array(shards[0])) }
        let (rows, columns) = (shardShape[0], shardShape[1])
        let whole = isDown ? Matrix(rows: rows * count, columns: columns) : Matrix(rows: rows, columns: columns * count)
        for (index, values) in shards.enumerated() {
            var values = Array(values)
            values.withUnsafeMutableBufferPointer { buffer in
                let part = MatrixView(buffer, rows: rows, columns: columns)
                if isDown {
                    whole.view.rows(Experts.downRows(hiddenWidth: config.expertWidth, shard: index, shards: count)).copy(from: part)
                } else {
                    let width = config.expertWidth / count
                    let targets = Experts.upColumns(hiddenWidth: config.expertWidth, activation: config.activation, shard: index, shards: count)
                    for (piece, target) in targets.enumerated() {
                        whole.view.columns(target).copy(from: part.columns((piece * width)..<((piece + 1) * width)))
                    }
                }
            }
        }
        return ([whole.rows, whole.columns], whole.elements)
    }

    private static func shardEntries(_ model: MoETransformer) -> [ParameterSet.Entry] {
        model.parameters.entries.filter { !$0.replicated }
    }

    /// A number per sharded tensor that names it across ranks: layer, global expert id, up or down.
    private static func shardNames(_ model: MoETransformer) -> [Int64] { shardEntries(model).map { expertID($0.name) } }

    /// "blocks.L.moe.experts.E.up|down" as L * 2^32 + E * 2 + (down ? 1 : 0).
    private static func expertID(_ name: String) -> Int64 {
        let parts = name.split(separator: ".")
        let layer = Int64(parts[1])!, expert = Int64(parts[4])!
        return layer << 32 | expert << 1 | (parts[5] == "down" ? 1 : 0)
    }

    /// The name `MoELayer.parameterTensors` gives expert tensor `id`, under the model's block prefix.
    private static func expertName(_ id: Int64) -> String {
        "blocks.\(id >> 32).moe.experts.\((id & 0xFFFF_FFFF) >> 1).\(id & 1 == 1 ? "down" : "up")"
    }
}
