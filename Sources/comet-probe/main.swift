import ArgumentParser
import CometCore
import CometKernels
import CometLaunch
import CometMPI
import Synchronization

/// `mpirun -n W comet-probe SCENARIO`: the multi-rank checks of the runtime that
/// the test suite runs. Each scenario ends with one line from rank 0,
/// "comet-probe SCENARIO: passed on W ranks ...", or fails with a non-zero exit.
struct CometProbe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet-probe",
        abstract: "Multi-rank checks of comet's runtime, run by the test suite under mpirun.",
        subcommands: [Window.self, Flags.self, Collectives.self, Groups.self, Deadline.self, Blas.self, MoECheck.self])
}

/// Fails the scenario on every rank if any rank saw `failures`.
func requireAgreement(_ comm: Communicator, _ failures: Int, _ what: String) throws {
    let total = try comm.allReduce(Int64(failures), .sum)
    if total > 0 { throw InputError("\(what): \(total) mismatches") }
}

func announce(_ comm: Communicator, _ line: String) {
    if comm.rank == 0 { print("comet-probe \(line)") }
}

extension CometProbe {
    struct Window: RankCommand {
        static let configuration = CommandConfiguration(abstract: "Window round trips: put, flag, get.")
        @Flag(help: "Use MPI_Put/MPI_Get even on one node.") var forcePutGet = false
        @OptionGroup var runtime: RuntimeOptions

        func run(on context: RankContext) throws {
            let path = try SelfCheck.windowRoundTrip(on: context.world, forcePutGet: forcePutGet)
            announce(context.world, "window: passed on \(context.world.size) ranks, path \(path.rawValue)")
        }
    }

    /// Each round, a communicator thread puts a block into the next rank's window
    /// and raises that rank's flag; on the receiving rank, its communicator thread
    /// waits for the flag and hands the block to a GEMM thread through a second,
    /// local flag. Every rank also adds to a counter flag on every rank.
    struct Flags: RankCommand {
        static let configuration = CommandConfiguration(abstract: "Flags across ranks and across threads of a rank.")
        @Flag(help: "Use MPI_Put/MPI_Get even on one node.") var forcePutGet = false
        @Option(help: "Rounds of put, flag and hand-off.") var rounds = 40
        @OptionGroup var runtime: RuntimeOptions

        func run(on context: RankContext) throws {
            let world = context.world
            let block = 256
            let rounds = self.rounds
            let window = try SymmetricWindow(
                communicator: world, byteCount: rounds * block * MemoryLayout<Float>.stride, flagCount: 3,
                forcePutGet: forcePutGet)
            let (arrived, handedOff, counter) = (0, 1, 2)
            let next = (world.rank + 1) % world.size
            let previous = (world.rank + world.size - 1) % world.size
            let value: @Sendable (Int, Int) -> Float = { rank, round in Float(round * 1000 + rank) }
            let failures = FailureCount()

            try context.device.workers.run(2) { thread in
                if thread == 0 {  // communicator thread
                    for round in 1...rounds {
                        let payload = [Float](repeating: value(world.rank, round), count: block)
                        try payload.withUnsafeBytes {
                            try window.put($0.baseAddress!, byteCount: $0.count, toRank: next, offset: (round - 1) * $0.count)
                        }
                        try window.setFlag(arrived, to: UInt64(round), onRank: next)
                        try window.waitForFlag(arrived, toReach: UInt64(round), "block \(round) from rank \(previous)")
                        try window.setFlag(handedOff, to: UInt64(round), onRank: world.rank)
                    }
                    for rank in 0..<world.size { try window.addToFlag(counter, 1, onRank: rank) }
                } else {  // GEMM thread
                    let data = window.localData.assumingMemoryBound(to: Float.self)
                    for round in 1...rounds {
                        try window.waitForFlag(handedOff, toReach: UInt64(round), "hand-off of block \(round)")
                        let expected = value(previous, round)
                        failures.add((0..<block).filter { data[(round - 1) * block + $0] != expected }.count)
                    }
                    try window.waitForFlag(counter, toReach: UInt64(world.size), "one increment from every rank")
                }
            }
            try requireAgreement(world, failures.value, "flags")
            try world.barrier()
            try window.free()
            announce(world, "flags: passed on \(world.size) ranks, path \(window.path.rawValue), \(rounds) rounds")
        }
    }

    /// Each collective on the world and on two halves of it, against what a single
    /// process computes from every rank's known input.
    struct Collectives: RankCommand {
        static let configuration = CommandConfiguration(abstract: "Every collective against a single-rank reference.")
        @OptionGroup var runtime: RuntimeOptions

        func run(on context: RankContext) throws {
            let world = context.world
            let halves = try world.split(color: world.rank % 2, key: world.rank)
            var failures = 0
            for comm in [world, halves] {
                failures += try checkCollectives(comm)
            }
            try requireAgreement(world, failures, "collectives")
            announce(world, "collectives: passed on \(world.size) ranks")
        }

        func checkCollectives(_ comm: Communicator) throws -> Int {
            let (rank, size) = (comm.rank, comm.size)
            var failures = 0
            func expect<T: Equatable>(_ got: [T], _ want: [T]) { if got != want { failures += 1 } }

            try comm.barrier()

            var sums = (0..<10).map { Float((rank + 1) * ($0 + 1)) }
            try comm.allReduce(&sums, .sum)
            expect(sums, (0..<10).map { i in (0..<size).reduce(Float(0)) { $0 + Float(($1 + 1) * (i + 1)) } })

            var maxima = (0..<4).map { Int64(rank * 3 - $0) }
            try comm.allReduce(&maxima, .max)
            expect(maxima, (0..<4).map { Int64((size - 1) * 3 - $0) })

            let root = size - 1
            var broadcast = rank == root ? [1.5, -2.25, 3] : [Double](repeating: 0, count: 3)
            try comm.broadcast(&broadcast, root: root)
            expect(broadcast, [1.5, -2.25, 3])

            let gathered = try comm.allGather((0..<3).map { Int32(rank * 10 + $0) })
            expect(gathered, (0..<size).flatMap { r in (0..<3).map { Int32(r * 10 + $0) } })

            // Uneven counts, including zero: rank s sends (s + d) % 3 values to rank d.
            let count = { (source: Int, target: Int) in (source + target) % 3 }
            let element = { (source: Int, target: Int, j: Int) in Float(source * 1000 + target * 10 + j) }
            let send = (0..<size).flatMap { d in (0..<count(rank, d)).map { element(rank, d, $0) } }
            let received = try comm.allToAllV(send, sendCounts: (0..<size).map { count(rank, $0) })
            expect(received, (0..<size).flatMap { s in (0..<count(s, rank)).map { element(s, rank, $0) } })

            let scattered = try comm.reduceScatter((0..<(2 * size)).map { Float(rank + $0) }, .sum)
            expect(scattered, (0..<2).map { j in (0..<size).reduce(Float(0)) { $0 + Float($1 + 2 * rank + j) } })
            return failures
        }
    }

    /// Every EP x TP x DP layout of the job: group sizes and members.
    struct Groups: RankCommand {
        static let configuration = CommandConfiguration(abstract: "Communicator splits for every layout of the job.")
        @OptionGroup var runtime: RuntimeOptions

        func run(on context: RankContext) throws {
            let world = context.world
            let layouts = ParallelLayout.all(worldSize: world.size)
            var failures = 0
            for layout in layouts {
                let groups = try ProcessGroups(world: world, layout: layout)
                let me = layout.coordinates(of: world.rank)
                let expected: [(Communicator, [Int])] = [
                    (groups.expert, (0..<layout.expertParallel).map { layout.rank(ep: $0, tp: me.tp, dp: me.dp) }),
                    (groups.tensor, (0..<layout.tensorParallel).map { layout.rank(ep: me.ep, tp: $0, dp: me.dp) }),
                    (groups.data, (0..<layout.dataParallel).map { layout.rank(ep: me.ep, tp: me.tp, dp: $0) }),
                    (groups.moe, (0..<layout.expertParallel * layout.tensorParallel).map {
                        layout.rank(ep: $0 / layout.tensorParallel, tp: $0 % layout.tensorParallel, dp: me.dp)
                    }),
                ]
                for (group, members) in expected {
                    let found = try group.allGather([Int64(world.rank)]).map { Int($0) }
                    if found != members { failures += 1 }
                }
            }
            try requireAgreement(world, failures, "groups")
            announce(world, "groups: passed on \(world.size) ranks, \(layouts.count) layouts: "
                + layouts.map { "\($0.expertParallel)x\($0.tensorParallel)x\($0.dataParallel)" }.joined(separator: " "))
        }
    }

    /// The last rank waits for a flag that no rank raises; the job must abort
    /// with its report once the deadline passes.
    struct Deadline: RankCommand {
        static let configuration = CommandConfiguration(abstract: "A missed deadline aborts the job with a report.")
        @Flag(help: "Use MPI_Put/MPI_Get even on one node.") var forcePutGet = false
        @OptionGroup var runtime: RuntimeOptions

        func run(on context: RankContext) throws {
            let patient = context.world.withWaitTimeout(600)
            let window = try SymmetricWindow(communicator: context.world, byteCount: 64, flagCount: 1, forcePutGet: forcePutGet)
            if context.world.rank == context.world.size - 1 {
                try window.waitForFlag(0, toReach: 1, "a flag that no rank raises")
            }
            try patient.barrier()
            announce(context.world, "deadline: no rank missed its deadline (unexpected)")
        }
    }

    struct Blas: RankCommand {
        static let configuration = CommandConfiguration(abstract: "Report the BLAS kernel this rank runs and its check.")
        @OptionGroup var runtime: RuntimeOptions

        func run(on context: RankContext) throws {
            guard context.blas.check.passed else {
                throw InputError("BLAS kernel: \(context.blas.summary)")
            }
            announce(context.world, "blas: passed on \(context.world.size) ranks, \(context.blas.summary)")
        }
    }
}

/// A count that several threads add to.
final class FailureCount: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .acquiring) }
    func add(_ n: Int) { count.add(n, ordering: .relaxed) }
}

Launch.main(CometProbe.self)
