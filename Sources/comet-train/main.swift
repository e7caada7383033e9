import ArgumentParser
import CometKernels
import CometLaunch
import CometMPI
import Foundation

/// `mpirun -n 8 comet-train`: until training lands, a self-check of the runtime.
struct CometTrain: RankCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet-train",
        abstract: "Train a toy MoE transformer with one MPI rank per emulated GPU.",
        discussion: "Training arrives with the MoE layer; for now this runs a self-check of the runtime: "
            + "ranks and layout, symmetric-window round trips on both paths, and the BLAS kernel.")

    @OptionGroup var layout: LayoutOptions
    @OptionGroup var runtime: RuntimeOptions

    func run(on context: RankContext) throws {
        let world = context.world
        let groups = try ProcessGroups(world: world, layout: layout.layout(worldSize: world.size))
        let nodes = try world.nodeCount()
        let native = try SelfCheck.windowRoundTrip(on: world, forcePutGet: false)
        let putGet = try SelfCheck.windowRoundTrip(on: world, forcePutGet: true)
        let gflops = try SelfCheck.onRankZeroAlone(world) { OpenBLAS.measureGFLOPs(m: 512, n: 512, k: 512) }
        guard context.blas.check.passed else {
            throw SelfCheckFailure(description: "the BLAS kernel failed its check: \(context.blas.summary)")
        }
        if world.rank == 0 {
            print("""
            comet-train: runtime self-check (training arrives with the MoE layer)
              ranks:  \(world.size) on \(nodes) node(s), layout \(groups.layout), \(MPIRuntime.libraryVersion), MPI_THREAD_MULTIPLE
              groups: expert \(groups.expert.size) ranks, tensor \(groups.tensor.size), data \(groups.data.size)
              window: round trip ok on \(native) and on \(putGet)
              BLAS:   \(context.blas.summary)
                      one BLAS thread per calling thread; \(String(format: "%.1f", gflops)) GFLOP/s single-thread at 512x512x512
            self-check passed
            """)
        }
    }
}

Launch.main(CometTrain.self)
