import CometCore
import CometMoE

/// The least time one pass of comet (forward or backward) could take on this rank
/// with its own measured work, in comet's structure: layer1 (GEMM2 in column blocks,
/// pushed home and top-k-reduced there) starts only once all of layer0 (dispatch +
/// GEMM1) has ended. Seconds from `start`, the pass's start on the timeline's clock;
/// `activities` are the rank's in that pass, `rank` its rank in the layer's group.
///
/// Derivation, on the rank's clock (every term is measured in the same run, or is
/// the link model's time for bytes the run moved):
///
/// - layer0 ends once its last GEMM does. Its GEMMs start after the main thread's
///   work before the first GEMM (routing, the plan, packing: pre), and keep the GEMM
///   engines busy for W0 (the union of their intervals), so layer0 >= pre + W0. The
///   last GEMM also needs the last pulled rows: layer0 >= their arrival.
/// - layer1's GEMMs start after layer0 and keep the engines busy for W1; the block
///   computed last is then pushed home, which takes at least its own time on the
///   link (latency + bytes / bandwidth, the largest home's share): W1 + that.
/// - No push starts before the first block is computed (its GEMM, after layer0), and
///   one link carries a rank's pushes to one peer one after another: the first
///   block's GEMM + the link model's time for every byte pushed on the busiest link.
/// - The home reduces the last block once it is in: + that block's top-k reduce
///   (measured here; every rank reduces the same tokens x k x TP x columns).
/// - Backward: the tail (dW1) follows layer1 on the GEMM engines, so layer1 >= W1 +
///   tail too, and the main thread's work after the pass (the router's backward) adds.
///
/// So pass >= max(pre + W0, last arrival) + max(W1 + tail, max(W1 + last push, first
/// block + busiest link) + last reduce) + post. It holds on either clock; it is no
/// bound for comet-rows, whose layer1 does not wait for layer0.
func cometPassBound(_ activities: [Activity], start: Double, link: LinkModel, rank: Int) -> Double {
    func half(_ kind: ActivityKind, _ name: String) -> [Activity] {
        activities.filter { $0.kind == kind && $0.arguments["half"] == name }
    }
    func seconds(_ list: [Activity]) -> Double { list.reduce(0) { $0 + $1.end - $1.start } }
    func linkTime(_ pushes: [Activity]) -> Double {
        link.transferTime(bytes: pushes.reduce(0) { $0 + (Int($1.arguments["bytes"] ?? "") ?? 0) })
    }
    let (gemm0, gemm1, tail) = (half(.gemm, "layer0"), half(.gemm, "layer1"), half(.gemm, "tail"))
    let firstGEMM = gemm0.map(\.start).min() ?? .infinity
    let main = activities.filter { $0.thread == 0 && $0.kind != .wait }
    let (pre, post) = (seconds(main.filter { $0.start < firstGEMM }), seconds(main.filter { $0.start >= firstGEMM }))
    let arrival = (half(.comm, "layer0").map(\.end).max() ?? start) - start
    let layer0 = max(pre + Timeline.busySeconds(.gemm, in: gemm0), arrival)
    guard let first = gemm1.min(by: { $0.end < $1.end }), let last = gemm1.max(by: { $0.end < $1.end }) else {
        return layer0 + post
    }
    let pushes = half(.comm, "layer1").filter { $0.arguments["peer"] != "\(rank)" }  // pushes to oneself are free
    let lastPush = pushes.filter { $0.arguments["columns"] == last.arguments["columns"] }.map { linkTime([$0]) }.max() ?? 0
    let busiestLink = Dictionary(grouping: pushes) { $0.arguments["peer"] ?? "" }.values.map(linkTime).max() ?? 0
    let reduce = seconds(half(.local, "layer1").filter { $0.arguments["columns"] == last.arguments["columns"] })
    let w1 = Timeline.busySeconds(.gemm, in: gemm1)
    let layer1 = max(Timeline.busySeconds(.gemm, in: gemm1 + tail),
                     max(w1 + lastPush, first.end - first.start + busiestLink) + reduce)
    return layer0 + layer1 + post
}
