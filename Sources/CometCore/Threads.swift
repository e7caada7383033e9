import CometShim
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A rank's worker threads, kept for its lifetime: `run` hands one job to the
/// first `count` of them (starting more threads when it needs more) and returns
/// once all have finished it; between jobs they sleep on a futex. This is how a
/// layer call splits its work into communicator and GEMM threads without creating
/// a thread per call. Every thread may call MPI (`MPI_THREAD_MULTIPLE`).
///
/// One job at a time, from one thread: a job must not start another on its pool.
public final class WorkerPool: Sendable {
    /// What happens when a worker's part of a job throws.
    public enum Failure: Sendable {
        /// The first error is rethrown by `run` once every worker has finished.
        case rethrow
        /// The job is aborted at once with the error (`Job.abort`): the other workers
        /// of a layer call wait for the failed one's flags, and would otherwise time
        /// out with a report of their wait instead of the error.
        case abortJob
    }

    private let shared: PoolState

    /// A pool whose workers are engines 1, 2, ... of `clock` (`DeviceClock`), and
    /// whose jobs fork from and join into the calling thread's time.
    public init(onFailure failure: Failure, clock: any Clock = WallClock()) {
        shared = PoolState(failure: failure, clock: clock)
    }

    deinit { shared.stop() }

    /// Runs `body(index)` for index 0..<count, each on its own worker thread, and
    /// waits for all of them. An error thrown is handled as the pool's `Failure` says.
    public func run(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        precondition(count >= 1, "a job needs at least one thread")
        try shared.run(count, body)
    }

    /// Runs `body(task, thread)` for tasks 0..<count on up to `threads` threads, in task order.
    public func parallelFor(threads: Int, count: Int, _ body: @escaping @Sendable (_ task: Int, _ thread: Int) throws -> Void) throws {
        guard count > 0 else { return }
        let tasks = TaskCounter(count: count)
        try run(min(threads, count)) { thread in
            while let task = tasks.take() { try body(task, thread) }
        }
    }
}

/// What a pool's threads share: the job, each thread's go signal, and the count of
/// finished jobs that `run` waits on.
private final class PoolState: Sendable {
    private struct State {
        var go: [ThreadFlag] = []
        var job: (@Sendable (Int) throws -> Void)?
        var error: (any Error)?
        var jobs = 0
        var running = false
        var stopping = false
    }

    private let state = Mutex(State())
    /// Job runs finished by any worker, over the pool's life.
    private let finished = ThreadFlag()
    private let failure: WorkerPool.Failure
    private let clock: any Clock

    init(failure: WorkerPool.Failure, clock: any Clock) { (self.failure, self.clock) = (failure, clock) }

    func run(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        let (signals, generation, base) = state.withLock { state in
            if state.running { Job.abort("a worker pool runs one job at a time: a job started another on its own pool") }
            state.running = true
            while state.go.count < count { state.go.append(start(index: state.go.count)) }
            (state.job, state.error) = (body, nil)
            state.jobs += 1
            return (Array(state.go.prefix(count)), state.jobs, finished.current)
        }
        clock.fork(1..<(count + 1))
        for signal in signals { signal.raise(to: generation) }
        clock.join(1..<(count + 1)) { finished.wait(toReach: base + count) }
        let error = state.withLock { state in
            (state.running, state.job) = (false, nil)
            return state.error
        }
        if let error { throw error }
    }

    /// Ends every worker once its current job is done (the pool is gone).
    func stop() {
        let signals = state.withLock { state in
            state.stopping = true
            return state.go
        }
        for signal in signals { signal.raise(to: Int(Int32.max)) }
    }

    /// Starts worker `index`, which sleeps until its signal rises; returns the signal.
    private func start(index: Int) -> ThreadFlag {
        let go = ThreadFlag()
        let job = Unmanaged.passRetained(ThreadJob { [self] in work(index: index, go: go) })
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadJob>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, job.toOpaque())
        precondition(status == 0, "pthread_create failed with \(status)")
        pthread_detach(thread)
        return go
    }

    /// Worker `index`'s life: each time `go` rises, run the job, then report it finished.
    private func work(index: Int, go: ThreadFlag) {
        var seen = 0
        while true {
            go.wait(toReach: seen + 1)
            seen = go.current
            guard let job = state.withLock({ $0.stopping ? nil : $0.job }) else { return }
            clock.begin(engine: index + 1)
            do {
                try job(index)
            } catch {
                if failure == .abortJob { Job.abort("\(error)") }
                state.withLock { if $0.error == nil { $0.error = error } }
            }
            clock.end()
            finished.add(1)
        }
    }
}

private final class ThreadJob {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Hands out task numbers 0..<count in order to whichever thread asks first.
public final class TaskCounter: Sendable {
    private let next = Atomic<Int>(0)
    public let count: Int

    public init(count: Int) { self.count = count }

    /// The next task, or nil when all are taken.
    public func take() -> Int? {
        let task = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return task < count ? task : nil
    }
}

/// A counter that threads of one rank raise and wait on (acquire/release). A
/// waiter sleeps in the kernel until the counter changes (a futex), with the
/// communicator's deadline, like the window's flags. Raisers may say when they
/// raised it (`at`, on their clock): the counter keeps the latest such time, so that
/// a waiter on a device clock moves to it (`wait(toReach:on:...)`).
public final class ThreadFlag: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    private let stamp = Mutex<Double>(0)

    public init() { word.initialize(to: 0) }
    deinit { word.deallocate() }

    public func raise(to newValue: Int, at time: Double = 0) {
        stamp.withLock { $0 = max($0, time) }
        comet_store_release_u32(word, UInt32(newValue))
        comet_futex_wake_all(word)
    }

    @discardableResult
    public func add(_ delta: Int, at time: Double = 0) -> Int {
        stamp.withLock { $0 = max($0, time) }
        let new = Int(comet_fetch_add_u32(word, UInt32(delta))) + delta
        comet_futex_wake_all(word)
        return new
    }

    public var current: Int { Int(comet_load_acquire_u32(word)) }

    /// The latest time a raiser gave.
    public var time: Double { stamp.withLock { $0 } }

    /// Rung whenever the counter changes.
    public var bell: Doorbell { Doorbell(word) }

    /// Sleeps until the counter reaches `target`, however long that takes.
    public func wait(toReach target: Int) {
        while true {
            let now = comet_load_acquire_u32(word)
            if now >= target { return }
            chargeAsWaiting { comet_futex_wait(word, now, 1_000_000_000) }
        }
    }

    /// Waits until the counter reaches `target`; past `timeout` seconds the job aborts with a report.
    public func wait(toReach target: Int, timeout: Double, _ what: @autoclosure () -> String) {
        var backoff = Backoff(timeout: timeout)
        while true {
            let now = comet_load_acquire_u32(word)
            if now >= target { return }
            backoff.sleep(on: Doorbell(word), seen: now, "waited \(timeout) s for \(what()) to reach \(target); it holds \(now)")
        }
    }

    /// Waits on `clock` until the counter reaches `target`, raised by other threads of
    /// the rank; the caller's time becomes the latest raiser's, if later.
    public func wait(toReach target: Int, on clock: any Clock, timeout: Double, _ what: @autoclosure () -> String) {
        var backoff = Backoff(timeout: timeout)
        while true {
            let seen = comet_load_acquire_u32(word)
            if seen >= target { return clock.wait(until: time) }
            clock.awaitLocal(bell: bell, seen: seen, until: .infinity, backoff: &backoff,
                             "\(what()) to reach \(target); it holds \(seen)") { [self] in current >= target ? time : nil }
        }
    }
}

/// A mutual-exclusion lock that can be stored in arrays and shared between threads.
public final class Lock: Sendable {
    private let mutex = Mutex(())

    public init() {}

    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        try mutex.withLock { _ in try body() }
    }
}
