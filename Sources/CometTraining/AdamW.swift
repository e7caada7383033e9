import CometKernels
import CometVector
import Foundation

/// AdamW's settings and the learning-rate schedule: linear warmup, then cosine
/// decay to `minLearningRateFraction` of the peak at `totalSteps`.
public struct OptimizerConfig: Codable, Sendable, Equatable {
    public var learningRate: Float = 3e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.1
    /// Gradients are scaled down when their global L2 norm exceeds this.
    public var gradientClip: Float = 1.0
    public var warmupSteps = 20
    public var minLearningRateFraction: Float = 0.1

    public init() {}

    /// The learning rate at `step` (0-based) of `totalSteps`.
    public func learningRate(step: Int, totalSteps: Int) -> Float {
        if step < warmupSteps { return learningRate * Float(step + 1) / Float(warmupSteps) }
        let span = max(totalSteps - warmupSteps, 1)
        let progress = min(Float(step - warmupSteps) / Float(span), 1)
        let cosine = 0.5 * (1 + cos(Float.pi * progress))
        return learningRate * (minLearningRateFraction + (1 - minLearningRateFraction) * cosine)
    }
}

/// AdamW over a `ParameterSet`: first and second moments in allocations of the
/// same layout, decoupled weight decay on the tensors marked `decays`.
public final class AdamW: @unchecked Sendable {
    public let config: OptimizerConfig
    public let firstMoment: UnsafeMutableBufferPointer<Float>
    public let secondMoment: UnsafeMutableBufferPointer<Float>
    /// Updates taken so far.
    public var step = 0

    public init(config: OptimizerConfig, parameterCount: Int) {
        self.config = config
        firstMoment = .allocateZeroed(max(parameterCount, 1))
        secondMoment = .allocateZeroed(max(parameterCount, 1))
    }

    deinit {
        firstMoment.deallocateZeroed()
        secondMoment.deallocateZeroed()
    }

    /// One update of `parameters` from their gradients times `gradientScale` (the
    /// clipping factor), at learning rate `learningRate`.
    public func update(_ parameters: ParameterSet, learningRate: Float, gradientScale: Float) {
        step += 1
        let (b1, b2) = (config.beta1, config.beta2)
        let correction1 = 1 - pow(b1, Float(step)), correction2 = 1 - pow(b2, Float(step))
        let (m, v, w, g) = (firstMoment, secondMoment, parameters.values, parameters.gradients)
        elementwise("adamw update", elements: parameters.count) {
            for entry in parameters.entries {
                let decay = entry.decays ? learningRate * config.weightDecay : 0
                comet_adamw_update(w.baseAddress! + entry.offset, m.baseAddress! + entry.offset, v.baseAddress! + entry.offset,
                                   g.baseAddress! + entry.offset, entry.count, gradientScale, b1, b2, correction1, correction2,
                                   learningRate, config.epsilon, decay)
            }
        }
    }

    /// The factor that brings gradients of global norm `norm` down to the clip.
    public func clipScale(globalNorm norm: Double) -> Float {
        norm > Double(config.gradientClip) ? Float(Double(config.gradientClip) / norm) : 1
    }
}
