import CometKernels
import CometMPI
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
        // Each expert once: from the first rank that holds it. Every rank's shard has the
        // same layout (same shapes in the same order), only the expert ids differ.
        var written = Set<Int64>()
        let (shard, entries) = (sharded.count, shardEntries(model))
        for rank in 0..<world.size {
            for (position, entry) in entries.enumerated() {
                let id = names[rank * entries.count + position]
                guard written.insert(id).inserted else { continue }
                let start = rank * 3 * shard + entry.offset - model.replicatedCount
                add(expertName(id), entry.shape, values: gathered[start..<(start + entry.count)],
                    m: gathered[(start + shard)..<(start + shard + entry.count)],
                    v: gathered[(start + 2 * shard)..<(start + 2 * shard + entry.count)])
            }
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
            throw CheckpointError("the checkpoint \(url.path) is corrupt or truncated: \(error.description)")
        } catch {
            throw CheckpointError("cannot read the checkpoint \(url.path): it does not exist or is not readable")
        }
        let parameters = model.parameters
        for entry in parameters.entries {
            let name = entry.name
            for (tensorName, target) in [(name, parameters.values), ("optimizer.m.\(name)", optimizer.firstMoment),
                                         ("optimizer.v.\(name)", optimizer.secondMoment)] {
                guard let tensor = file.tensors[tensorName] else {
                    throw CheckpointError("the checkpoint \(url.path) does not match this model: it has no tensor \(tensorName)")
                }
                guard tensor.shape == entry.shape, case .float32(let values) = tensor.values else {
                    throw CheckpointError("the checkpoint \(url.path) does not match this model: \(tensorName) has shape \(tensor.shape), "
                        + "the model needs \(entry.shape)")
                }
                _ = UnsafeMutableBufferPointer(rebasing: target[entry.offset..<(entry.offset + entry.count)]).update(fromContentsOf: values)
            }
        }
        guard case .int64(let step)? = file.tensors["optimizer.step"]?.values, let first = step.first else {
            throw CheckpointError("the checkpoint \(url.path) has no optimizer.step")
        }
        optimizer.step = Int(first)
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

/// A checkpoint that cannot be used; every rank finds it alike.
public struct CheckpointError: UniformError {
    public let description: String
    public init(_ description: String) { self.description = description }
}
