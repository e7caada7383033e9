import ArgumentParser
import CometCore
import CometLaunch
import CometMPI
import CometMoE
import Foundation

// The emulated link of a benchmark: the `--link` choices, and what they are
// calibrated on (sequential on a native link, measured in the same run).

/// The `--link` choices.
enum LinkChoice: String, ExpressibleByArgument, CaseIterable {
    case native, balanced, balancedPass = "balanced-pass", h800, l20, device

    /// What the link reproduces, in a few words.
    var summary: String {
        switch self {
        case .native: "no pacing (a transfer takes what the memory copy takes)"
        case .balanced: "forward communication = forward expert GEMMs (the paper's regime)"
        case .balancedPass: "forward + backward communication = forward + backward expert GEMMs (a slower link than balanced)"
        case .h800: "the ratio of communication to expert GEMMs of 8 x H800 on NVLink, at this machine's GEMM speed"
        case .l20: "the ratio of communication to expert GEMMs of 8 x L20 on PCIe, at this machine's GEMM speed"
        case .device: "the modelled GPU's own interconnect (--device h200, h800 or l20, where it is the default)"
        }
    }

    /// The choice `given` (nil: the default) on the emulated device `device`: balanced on
    /// the host, the GPUs' interconnect on a modelled GPU. Throws a one-line error for a
    /// choice the device cannot take.
    static func resolve(_ given: LinkChoice?, on device: DeviceChoice) throws -> LinkChoice {
        switch (given, device.gpu) {
        case (nil, nil): return .balanced
        case (nil, .some): return .device
        case (.device, nil): throw InputError("--link device is a modelled GPU's interconnect: it needs --device h200, h800 or l20")
        case (.h800?, .some), (.l20?, .some):
            throw InputError("--link \(given!.rawValue) scales a GPU's link to this host's GEMM speed; with --device "
                + "\(device.rawValue) the GEMMs are the GPU's: use --link device (the default there)")
        case (let choice?, _): return choice
        }
    }

    /// The `--link` option's help: every choice with its summary.
    static let help = ArgumentHelp(
        "The emulated link, calibrated in this run on sequential (the report says how).",
        discussion: allCases.map { "\($0.rawValue): \($0.summary)." }.joined(separator: " "))
}

/// What the emulated links are derived from: sequential's expert GEMMs on a native
/// link, measured in this run on every rank (the slowest rank counts, the median
/// of three runs).
struct Calibration: Codable {
    /// Forward expert-GEMM seconds: what `balanced`'s forward exchanges take together.
    let forwardGEMMSeconds: Double
    /// Forward + backward expert-GEMM seconds: what `balanced-pass`'s exchanges take together.
    let passGEMMSeconds: Double
    /// Bytes of the busiest rank pair's exchange (either direction), the most of any layer.
    let busiestPairBytes: Int
    /// Bytes of the busiest rank's exchange, all it sends or all it receives, whichever
    /// is more, the most of any layer: what a port carries (`LinkModel.Queues.perPort`).
    let busiestPortBytes: Int
    /// One rank's GEMM FLOP/s.
    let rankFLOPs: Double
    /// MoE layers measured; each makes a dispatch and a combine per pass.
    let moeLayers: Int

    /// One run of sequential's forward and backward, on this rank.
    struct Sample {
        let forwardGEMMSeconds: Double
        let passGEMMSeconds: Double
        /// GEMM FLOPs of the forward and backward.
        let flops: Double
        let busiestPairBytes: Int
        let busiestPortBytes: Int
    }

    /// Runs `sample` three times and keeps the medians of the slowest rank's GEMM
    /// seconds. Collective.
    static func measure(_ world: Communicator, moeLayers: Int, _ sample: () throws -> Sample) throws -> Calibration {
        var forward: [Double] = [], pass: [Double] = [], flops = 0.0, bytes = [Int64](repeating: 0, count: 2)
        for _ in 0..<3 {
            let measured = try sample()
            var seconds = [measured.forwardGEMMSeconds, measured.passGEMMSeconds]
            try world.allReduce(&seconds, .max)
            forward.append(seconds[0])
            pass.append(seconds[1])
            (flops, bytes) = (measured.flops, [Int64(measured.busiestPairBytes), Int64(measured.busiestPortBytes)])
        }
        let passGEMMSeconds = median(pass)
        try world.allReduce(&bytes, .max)
        return Calibration(forwardGEMMSeconds: median(forward), passGEMMSeconds: passGEMMSeconds,
                           busiestPairBytes: Int(bytes[0]), busiestPortBytes: Int(bytes[1]),
                           rankFLOPs: try world.allReduce(flops, .max) / passGEMMSeconds, moeLayers: moeLayers)
    }

    /// Bytes of the busiest of `queues` in one exchange.
    func busiestLinkBytes(_ queues: LinkModel.Queues) -> Int { queues == .perPeer ? busiestPairBytes : busiestPortBytes }

    /// The link `choice` names: `balanced` so that the busiest pair's forward
    /// exchanges (a dispatch and a combine per MoE layer) take as long as the forward
    /// GEMMs, `balanced-pass` so that those of both passes take as long as the GEMMs of
    /// both; the GPU presets scaled to this machine's GEMM speed.
    func link(_ choice: LinkChoice, device: DeviceChoice) -> LinkModel {
        switch choice {
        case .native: .native
        case .device: device.gpu!.link
        case .balanced:
            .balanced(gemmSeconds: forwardGEMMSeconds, busiestPairBytes: busiestPairBytes, exchanges: 2 * moeLayers,
                      name: choice.rawValue)
        case .balancedPass:
            .balanced(gemmSeconds: passGEMMSeconds, busiestPairBytes: busiestPairBytes, exchanges: 4 * moeLayers,
                      name: choice.rawValue)
        case .h800: DevicePreset.h800.link(rankFLOPs: rankFLOPs)
        case .l20: DevicePreset.l20.link(rankFLOPs: rankFLOPs)
        }
    }

    /// How the link `choice` was calibrated, with the figures it was calibrated on:
    /// "balanced: forward communication = forward expert GEMMs (the paper's regime); ...".
    func explanation(_ choice: LinkChoice) -> String {
        let perLayer = moeLayers > 1 ? ", in each of the \(moeLayers) MoE layers" : ""
        let detail = switch choice {
        case .native: ""
        case .balanced:
            String(format: "; sequential's forward (a dispatch and a combine of the busiest rank pair's %.3g MB%@) takes "
                + "%.1f ms on that pair's link, as long as its forward expert GEMMs", Double(busiestPairBytes) / 1e6, perLayer,
                forwardGEMMSeconds * 1e3)
        case .balancedPass:
            String(format: "; sequential's forward and backward (a dispatch and a combine per pass of the busiest rank pair's "
                + "%.3g MB%@) take %.1f ms on that pair's link, as long as its expert GEMMs of both passes",
                Double(busiestPairBytes) / 1e6, perLayer, passGEMMSeconds * 1e3)
        case .h800, .l20: String(format: " (%.1f GFLOP/s per rank, measured)", rankFLOPs / 1e9)
        case .device: ""
        }
        return "\(choice.rawValue): \(choice.summary)\(detail)"
    }
}
