import CometShim
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Calls into a library that block with no deadline of their own, such as a put on
/// the window's put/get path and its `MPI_Win_flush`: it returns once the target has
/// the data, and over TCP a lost link keeps it waiting for minutes. While such a call
/// runs it is on record here. A watchdog thread aborts the job once one has lasted
/// longer than its timeout, and every abort of the job (`Job.abort`) names the calls
/// still running, so that a rank whose threads are stuck in MPI says where.
public enum BlockingCall {
    private struct Call {
        let name: StaticString, target: Int, engine: Int32, since: Double, timeout: Double
    }

    /// The running calls, by thread.
    private static let calls = Mutex<[UInt: Call]>([:])
    private static let watching = Atomic<Bool>(false)

    /// Runs `body`, a call named `name` that waits for rank `target`, on record; past
    /// `timeout` host seconds the job aborts.
    public static func run<T>(_ name: StaticString, target: Int, timeout: Double, _ body: () throws -> T) rethrows -> T {
        if !watching.load(ordering: .relaxed),
           watching.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            startWatchdog()
        }
        let thread = UInt(pthread_self())
        let call = Call(name: name, target: target, engine: comet_engine(), since: hostSeconds(), timeout: timeout)
        calls.withLock { $0[thread] = call }
        defer { _ = calls.withLock { $0.removeValue(forKey: thread) } }
        return try body()
    }

    /// The calls running now, for a report ("engine 1 in MPI_Put for rank 5, 5.0 s;
    /// ..."), or nil if there are none.
    static func running() -> String? {
        let now = hostSeconds()
        let lines = calls.withLock { calls in
            calls.values.sorted { $0.engine < $1.engine }.map { call in
                let who = call.engine >= 0 ? "engine \(call.engine)" : "a thread"
                let seconds = ((now - call.since) * 10).rounded() / 10
                return "\(who) in \(call.name) for rank \(call.target), \(seconds) s"
            }
        }
        return lines.isEmpty ? nil : lines.joined(separator: "; ")
    }

    /// A thread that runs `watch`.
    private static func startWatchdog() {
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { _ in BlockingCall.watch() }, nil)
        precondition(status == 0, "pthread_create failed with \(status)")
        pthread_detach(thread)
    }

    /// Looks at the running calls four times a second and aborts the job once one is
    /// past its timeout.
    private static func watch() -> Never {
        while true {
            usleep(250_000)
            let now = hostSeconds()
            if let late = calls.withLock({ $0.values.first { now - $0.since > $0.timeout } }) {
                Job.abort("waited \(late.timeout) s for a blocking call to return")
            }
        }
    }
}
