/// The device a rank plays, for the rank's lifetime: the worker threads that its
/// layer calls run on (communicator and GEMM threads, parked between calls) and
/// the clock that everything on it reads. Every layer, trainer and bench of the
/// rank is given it at construction. A worker that fails aborts the job at once
/// with its error (`WorkerPool.Failure.abortJob`).
public final class Device: Sendable {
    public let clock: any Clock
    public let workers: WorkerPool

    /// A device on `clock`, created on the rank's main thread (engine 0 of a `DeviceClock`).
    public init(clock: any Clock) {
        self.clock = clock
        workers = WorkerPool(onFailure: .abortJob, clock: clock)
    }
}
