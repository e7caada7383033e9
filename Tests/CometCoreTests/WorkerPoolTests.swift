import CometCore
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class WorkerPoolTests: XCTestCase {
    /// Jobs of different widths on one pool: every index runs once per job, and the
    /// pool keeps its threads (the same thread serves index 0 every time).
    func testJobsReuseTheirThreads() throws {
        let pool = WorkerPool(onFailure: .rethrow)
        let runs = Mutex<[Int: Int]>([:])
        let threadOfZero = Mutex<Set<UInt64>>([])
        for count in [3, 1, 4, 2] {
            try pool.run(count) { index in
                runs.withLock { $0[index, default: 0] += 1 }
                if index == 0 { threadOfZero.withLock { _ = $0.insert(UInt64(pthread_self())) } }
            }
        }
        XCTAssertEqual(runs.withLock { $0 }, [0: 4, 1: 3, 2: 2, 3: 1])
        XCTAssertEqual(threadOfZero.withLock { $0.count }, 1)
    }

    /// The first error of a job comes back once every worker has finished it, and
    /// the pool still runs the next job.
    func testErrorsComeBackAndThePoolGoesOn() throws {
        struct Failure: Error, Equatable { let index: Int }
        let pool = WorkerPool(onFailure: .rethrow)
        let finished = Atomic<Int>(0)
        XCTAssertThrowsError(try pool.run(3) { index in
            defer { finished.add(1, ordering: .relaxed) }
            if index == 1 { throw Failure(index: 1) }
        }) { XCTAssertEqual($0 as? Failure, Failure(index: 1)) }
        XCTAssertEqual(finished.load(ordering: .relaxed), 3)
        let sum = Atomic<Int>(0)
        try pool.parallelFor(threads: 2, count: 10) { task, _ in sum.add(task, ordering: .relaxed) }
        XCTAssertEqual(sum.load(ordering: .relaxed), 45)
    }

    /// Workers of one job wait for each other through a flag (they really run at once).
    func testWorkersOfOneJobRunConcurrently() throws {
        let pool = WorkerPool(onFailure: .rethrow)
        let arrived = ThreadFlag()
        try pool.run(4) { _ in
            arrived.add(1)
            arrived.wait(toReach: 4, timeout: 30, "the other workers")
        }
        XCTAssertEqual(arrived.current, 4)
    }
}

final class WallClockTests: XCTestCase {
    /// Waits sleep until the clock reads the time; work reports its interval and the
    /// CPU the thread used, in seconds (a single thread can use no more than the interval).
    func testWorkAndWaitReadTheHostClock() {
        let clock = WallClock()
        let start = clock.now()
        clock.wait(until: start + 0.02)
        XCTAssertGreaterThanOrEqual(clock.now() - start, 0.02)
        let timed = clock.work { () -> Int in
            let begin = threadCPUSeconds()
            var spins = 0
            while threadCPUSeconds() - begin < 0.005 { spins += 1 }
            return spins
        }
        XCTAssertGreaterThan(timed.value, 0)
        XCTAssertGreaterThanOrEqual(timed.cpuSeconds, 0.005)
        XCTAssertLessThan(timed.cpuSeconds, 1)
        XCTAssertGreaterThanOrEqual(timed.end - timed.start, timed.cpuSeconds * 0.99)
    }
}
