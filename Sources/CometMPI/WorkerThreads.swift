import CometShim
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body(0..<count)` on `count` new threads and waits for all of them.
///
/// This is how a rank splits its work between communicator threads and GEMM
/// threads. Every thread may call MPI (`MPI_THREAD_MULTIPLE`). The first error
/// thrown by any thread is rethrown once all have finished.
public func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    precondition(count >= 1, "runThreads needs at least one thread")
    let outcome = ThreadOutcome()
    var threads: [pthread_t] = []
    for index in 0..<count {
        let job = Unmanaged.passRetained(ThreadJob {
            do { try body(index) } catch { outcome.record(error) }
        })
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            let job = Unmanaged<ThreadJob>.fromOpaque(raw!).takeRetainedValue()
            job.run()
            return nil
        }, job.toOpaque())
        precondition(status == 0, "pthread_create failed with \(status)")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    if let error = outcome.firstError { throw error }
}

private final class ThreadJob {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// A counter that threads of one rank raise and wait on (acquire/release). A
/// waiter sleeps in the kernel until the counter changes (a futex), with the
/// communicator's deadline, like the window's flags.
public final class ThreadFlag: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    public init() { word.initialize(to: 0) }
    deinit { word.deallocate() }

    public func raise(to newValue: Int) {
        comet_store_release_u32(word, UInt32(newValue))
        comet_futex_wake_all(word)
    }

    @discardableResult
    public func add(_ delta: Int) -> Int {
        let new = Int(comet_fetch_add_u32(word, UInt32(delta))) + delta
        comet_futex_wake_all(word)
        return new
    }

    public var current: Int { Int(comet_load_acquire_u32(word)) }

    /// Waits until the counter reaches `target`; past `timeout` seconds the job aborts with a report.
    public func wait(toReach target: Int, timeout: Double, _ what: @autoclosure () -> String) {
        var backoff = Backoff(timeout: timeout)
        while true {
            let now = comet_load_acquire_u32(word)
            if now >= target { return }
            backoff.sleep(on: Doorbell(word), seen: now, "waited \(timeout) s for \(what()) to reach \(target); it holds \(now)")
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

/// The first error any worker threw.
private final class ThreadOutcome: Sendable {
    private let error = Mutex<(any Error)?>(nil)

    func record(_ error: any Error) {
        self.error.withLock { if $0 == nil { $0 = error } }
    }

    var firstError: (any Error)? { error.withLock { $0 } }
}
