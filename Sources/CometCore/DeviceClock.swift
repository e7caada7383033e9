import CometShim
import Synchronization

/// Device time: the clock of the emulated device, whatever the host's cores (the
/// idea of SimGrid's SMPI, applied to each thread of a rank).
///
/// Every thread of the rank is an *engine*: the main thread is engine 0, worker
/// thread i of the device's pool is engine i + 1. Each engine has a clock in device
/// seconds. Running code advances it by the CPU time the thread uses (the host
/// device model: one core per engine; GEMMs may be charged from sampled costs
/// instead, `GEMMCosts`), or, when the host's CPU is ignored (`HostCPU.ignored`), by
/// the modelled costs of its kernels alone; waiting moves it to the time of the event
/// waited for, if that is later. Nothing else moves it: not the host descheduling
/// a thread, not a sleep, not a spin (waits report their CPU as not charged).
///
/// So that what an engine sees never depends on how the host ran the threads, the
/// engines of a rank take turns in device-time order, like a discrete-event
/// simulation: only the engine with the earliest clock runs (ties: the lower
/// engine), and it runs until its clock passes another's, or it waits. An engine
/// that waits for the rank's other engines steps aside (`awaitLocal`, `join`) and
/// comes back at the time of the event. An engine that waits for another rank
/// keeps the turn while the host waits, so no engine of the rank runs ahead of it:
/// such waits cost no device time, and every stamp that another rank sends is
/// known before anything later happens here.
///
/// Where the turn may change hands. Handing it over costs the host a futex wake
/// and a context switch, so an engine offers it only where the order of engines
/// can matter: before it looks at what the rank's other engines did (a flag, the
/// landing board, a task counter, "whatever has arrived") or tells them a time.
/// `now()`, the waits (`wait`, `awaitLocal`, `join`), the end of a `work` and the
/// end of a job's part give the turn to the earliest engine; a `stamp()` (a time
/// for a record) and the start of a `work` charge the CPU to the engine's clock
/// and keep the turn, even if the clock passes another engine's. The rule that
/// makes this safe: between a stamp and its next `now()` or wait, an engine neither
/// reads state that other engines of the rank write nor publishes anything to them
/// (it copies data, records, computes). What it does meanwhile is invisible to the
/// engines it overtook; at its next step they run first and find everything as at
/// their own time. So every observation still comes right after a step that let
/// every earlier engine run, and which engine runs depends on the clocks alone
/// (ties: the lower engine), never on the host.
///
/// Reading the clock may give the turn away, so no thread reads it (or works or
/// waits on it) while holding a lock that another engine of the rank takes.
public final class DeviceClock: Clock, @unchecked Sendable {
    /// Engines a rank may have: its main thread and up to 63 workers.
    public static let maxEngines = 64

    private let engines: Mutex<Engines>
    /// Engine i sleeps on `turns[i]` until it is given the turn.
    private let turns: [ThreadFlag]
    /// Host seconds an engine may wait for its turn before the job aborts.
    private let timeout: Double
    /// What the clock charges for the host's CPU outside modelled kernels.
    public let hostCPU: HostCPU

    /// A clock for the calling thread (engine 0) and its workers, starting at 0, that
    /// charges the host's CPU as `hostCPU` says.
    public init(timeout: Double, hostCPU: HostCPU = .charged) {
        (self.timeout, self.hostCPU) = (timeout, hostCPU)
        turns = (0..<Self.maxEngines).map { _ in ThreadFlag() }
        comet_set_engine(0)
        _ = (comet_take_waiting_cpu(), comet_take_modelled_seconds())
        engines = Mutex(Engines(count: Self.maxEngines, mainCPU: threadCPUSeconds()))
    }

    public var name: String { "device" }
    public var isPerRank: Bool { true }

    public func now() -> Double { step { _, _ in } }

    public func stamp() -> Double { charge().clock }

    public func work<T>(_ body: () throws -> T) rethrows -> Timed<T> {
        let (start, cpuStart) = charge()
        let value = try body()
        let cpu = threadCPUSeconds() - cpuStart
        return Timed(value: value, start: start, end: now(), cpuSeconds: cpu)
    }

    public func wait(until time: Double) {
        step { engines, me in engines.clock[me] = max(engines.clock[me], time) }
    }

    public func awaitLocal(
        bell: Doorbell?, seen: UInt32, until deadline: Double, backoff: inout Backoff, _ report: @autoclosure () -> String,
        next: @escaping @Sendable () -> Double?
    ) {
        let what = report()
        step { engines, me in engines.state[me] = .waiting(next: next, deadline: deadline, what: what) }
    }

    public func fork(_ workers: Range<Int>) {
        precondition(workers.upperBound <= Self.maxEngines, "a device has at most \(Self.maxEngines - 1) workers")
        step { engines, me in
            engines.inUse = max(engines.inUse, workers.upperBound)
            for worker in workers {
                engines.clock[worker] = engines.clock[me]
                engines.state[worker] = .ready
                engines.turnsSeen[worker] = turns[worker].current
            }
        }
    }

    public func begin(engine: Int) {
        comet_set_engine(Int32(engine))
        let seen = engines.withLock { $0.turnsSeen[engine] }
        awaitTurn(engine, seen: seen)
    }

    public func end() { handOver { engines, me in engines.state[me] = .idle } }

    public func join(_ workers: Range<Int>, _ hostWait: () -> Void) {
        step { engines, me in engines.state[me] = .joining(workers) }
        hostWait()
    }

    /// The calling thread's engine.
    private static var engine: Int {
        let engine = Int(comet_engine())
        precondition(engine >= 0, "a thread that is no engine of the device read its clock")
        return engine
    }

    /// The calling thread's CPU seconds, and since it last asked: those device time does
    /// not charge (waits, modelled work) and the modelled seconds it charges instead.
    private func chargeableCPU() -> Charge {
        Charge(total: threadCPUSeconds(), uncharged: comet_take_waiting_cpu(), modelled: comet_take_modelled_seconds())
    }

    /// Charges the calling engine's CPU and returns its clock and thread CPU seconds;
    /// it keeps the turn.
    private func charge() -> (clock: Double, cpu: Double) {
        let me = Self.engine
        let cpu = chargeableCPU()
        let clock = engines.withLock { engines in
            engines.charge(me, cpu, hostCPU)
            return engines.clock[me]
        }
        return (clock, cpu.total)
    }

    /// Charges the calling engine's CPU, applies `change`, and gives the turn to the
    /// earliest engine; returns the calling engine's clock once it has the turn again.
    @discardableResult
    private func step(_ change: (inout Engines, Int) -> Void) -> Double {
        let turn = handOver(change)
        return turn.next == turn.me ? turn.clock : awaitTurn(turn.me, seen: turn.seen)
    }

    /// Charges the calling engine's CPU, applies `change`, chooses the engine to run
    /// next and gives it the turn if it is another; returns the calling engine with
    /// its clock and turn counter as they were then.
    @discardableResult
    private func handOver(_ change: (inout Engines, Int) -> Void) -> (me: Int, next: Int, clock: Double, seen: Int) {
        let me = Self.engine
        let cpu = chargeableCPU()
        let (next, clock, seen) = engines.withLock { engines in
            engines.charge(me, cpu, hostCPU)
            change(&engines, me)
            let next = choose(&engines)
            return (next, engines.clock[me], turns[me].current)
        }
        if next != me { turns[next].add(1) }
        return (me, next, clock, seen)
    }

    /// Sleeps until engine `me` is given the turn after `seen`; returns its clock.
    /// The sleep's CPU is not reported as waiting (two thread-CPU reads per hand-over
    /// saved): the engine's CPU mark is set afresh once it has the turn.
    ///
    /// The job aborts once the turn has not changed hands on the device for twice the
    /// timeout. The engine that holds it meanwhile waits for a peer or a call with a
    /// deadline of its own, one timeout; that report, which names what it waited
    /// for, comes first.
    @discardableResult
    private func awaitTurn(_ me: Int, seen: Int) -> Double {
        let bell = turns[me].bell
        var (deadline, handOvers) = (hostSeconds() + 2 * timeout, engines.withLock { $0.handOvers })
        while true {
            let value = bell.value
            if Int(value) > seen { break }
            if hostSeconds() >= deadline {
                let latest = engines.withLock { $0.handOvers }
                guard latest != handOvers else {
                    let engines = engines.withLock { $0.describe() }
                    Job.abort("waited \(2 * timeout) s for engine \(me)'s turn on the device, "
                              + "which no engine passed on meanwhile (\(engines))")
                }
                (deadline, handOvers) = (hostSeconds() + 2 * timeout, latest)
            }
            let nap = min(max(deadline - hostSeconds(), 0), 0.05)  // wakes now and then to check the deadline
            comet_futex_wait(bell.word, value, Int64(nap * 1e9))
        }
        _ = (comet_take_waiting_cpu(), comet_take_modelled_seconds())
        let cpu = threadCPUSeconds()
        return engines.withLock { engines in
            engines.cpuMark[me] = cpu
            engines.turnsSeen[me] = turns[me].current
            return engines.clock[me]
        }
    }

    /// The engine to run next, made ready at its time; aborts the job when none can run.
    private func choose(_ engines: inout Engines) -> Int {
        guard let next = engines.earliest() else {
            Job.abort("no engine of the device can go on: \(engines.describe())")
        }
        return next
    }
}

/// What device time charges for the host's CPU that no cost model accounts for
/// (`--host-cpu`).
public enum HostCPU: String, Sendable, CaseIterable {
    /// The CPU time each engine's thread uses, outside its modelled kernels: the host
    /// device model, where the emulated device is this CPU with a core per engine.
    case charged
    /// Nothing: only modelled kernels (GEMMs, element-wise kernels, transfers on an
    /// emulated link) advance an engine, as SimGrid's `smpi/simulate-computation:no`.
    /// Device time then depends on the cost tables alone, so a run's timeline, and
    /// every choice a schedule makes by it, repeats exactly.
    case ignored
}

/// What an engine's thread reports when it is charged: its CPU seconds so far, and
/// since it was last charged, the CPU seconds not charged (waits, and work charged
/// by a model) and the modelled seconds charged instead.
private struct Charge {
    let total: Double, uncharged: Double, modelled: Double
}

/// The engines of one device: their clocks and what each is doing.
private struct Engines {
    enum State {
        /// A worker without a job.
        case idle
        /// Running, or waiting only for its turn.
        case ready
        /// Waiting for the rank's other engines until `deadline`: `next()` is the
        /// time of the earliest awaited event so far.
        case waiting(next: @Sendable () -> Double?, deadline: Double, what: String)
        /// Waiting for workers to end their parts.
        case joining(Range<Int>)
    }

    var clock: [Double]
    var state: [State]
    /// Thread CPU seconds already charged to each engine's clock.
    var cpuMark: [Double]
    /// The turn counter's value each engine has used.
    var turnsSeen: [Int]
    /// Engines 0..<inUse have been started; the others are idle.
    var inUse = 1
    /// How many times an engine has been chosen to run (`earliest`).
    var handOvers = 0

    init(count: Int, mainCPU: Double) {
        clock = [Double](repeating: 0, count: count)
        state = [State](repeating: .idle, count: count)
        state[0] = .ready
        cpuMark = [Double](repeating: 0, count: count)
        cpuMark[0] = mainCPU
        turnsSeen = [Int](repeating: 0, count: count)
    }

    /// Charges `engine` the CPU it used since its mark, less what device time does
    /// not charge (all of it when `hostCPU` is ignored), plus the modelled seconds of
    /// its modelled work.
    mutating func charge(_ engine: Int, _ cpu: Charge, _ hostCPU: HostCPU) {
        let host = hostCPU == .charged ? max(0, cpu.total - cpuMark[engine] - cpu.uncharged) : 0
        clock[engine] += host + cpu.modelled
        cpuMark[engine] = cpu.total
    }

    /// The engine with the earliest time at which it can run (ties: the lower one),
    /// made ready at that time; nil when none can run.
    mutating func earliest() -> Int? {
        var best: (time: Double, engine: Int)?
        for engine in 0..<inUse {
            guard let time = readyTime(engine), time.isFinite else { continue }
            if best == nil || time < best!.time { best = (time, engine) }
        }
        guard let best else { return nil }
        handOvers &+= 1
        clock[best.engine] = best.time
        state[best.engine] = .ready
        return best.engine
    }

    /// When `engine` can run: now if ready, at its awaited event or deadline if waiting,
    /// once its workers have ended if joining; nil if it cannot.
    private func readyTime(_ engine: Int) -> Double? {
        switch state[engine] {
        case .idle: return nil
        case .ready: return clock[engine]
        case .waiting(let next, let deadline, _):
            let time = min(deadline, next() ?? .infinity)
            return time < .infinity ? max(clock[engine], time) : nil
        case .joining(let workers):
            guard workers.allSatisfy({ if case .idle = state[$0] { true } else { false } }) else { return nil }
            return workers.reduce(clock[engine]) { max($0, clock[$1]) }
        }
    }

    func report(_ engine: Int) -> String {
        switch state[engine] {
        case .idle: "idle"
        case .ready: "ready at \(clock[engine]) s"
        case .waiting(_, _, let what): "at \(clock[engine]) s, waiting for \(what)"
        case .joining(let workers): "at \(clock[engine]) s, waiting for workers \(workers.lowerBound)..<\(workers.upperBound)"
        }
    }

    func describe() -> String {
        (0..<inUse).filter { if case .idle = state[$0] { false } else { true } }
            .map { "engine \($0) \(report($0))" }.joined(separator: "; ")
    }
}

extension Clock {
    /// The clock and what it charges, for the keys of figures timed on it (tuning
    /// profiles): "wall", "device" (the host's CPU charged) or "device, host CPU ignored".
    public var timingName: String { (self as? DeviceClock)?.hostCPU == .ignored ? "\(name), host CPU ignored" : name }
}
