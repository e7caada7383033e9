import CometMPI
import CometShim
import Glibc

/// Where a rank's threads run when its clock is the device's.
///
/// A device clock runs one engine of a rank at a time (`DeviceClock`): the engines
/// hand a turn to one another, so a rank needs one core, not one per engine. Each
/// rank is pinned to one CPU (ranks in order, round robin), so that a turn changes
/// hands on one core: no wake-up across cores, and the rows a communicator engine
/// copied are still in the cache when the GEMM engine reads them (`comet-train`,
/// 8 ranks on 2 cores, 100 steps: 6.9 s of wall time against 7.8 s unpinned, one
/// run each; docs/training.md has the interleaved comparison). Only ranks that
/// fill the node's CPUs evenly (8 on 2 or on 8, not 3 on 2) are pinned, and only
/// when mpirun left them unbound (`--bind-to none`): ranks with CPUs to spare, or
/// that mpirun bound, are left to the host's scheduler.
enum CorePinning {
    /// Pins this rank's process (its main thread, and the threads it starts from now
    /// on) to one CPU, if the node's ranks spread evenly. Collective.
    static func pinForDeviceClock(world: Communicator) throws {
        let node = try world.splitByNode()
        let cpus = Int(comet_allowed_cpu_count())
        let unbound = cpus == Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard unbound, cpus > 1, node.size % cpus == 0 else { return }
        _ = comet_pin_to_allowed_cpu(Int32(node.rank % cpus))
    }
}
