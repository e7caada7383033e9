import CometCore
import CometShim
import Synchronization
import XCTest

final class DeviceClockTests: XCTestCase {
    /// Burns about `seconds` of the calling thread's CPU.
    private func burn(_ seconds: Double) {
        let end = threadCPUSeconds() + seconds
        var x = 1.0
        while threadCPUSeconds() < end { x = x * 1.000001 + 1e-9 }
        XCTAssert(x > 0)
    }

    /// Work advances the engine's clock by its CPU time; sleeping and waiting for a
    /// time do not use CPU, and a wait moves the clock to the time waited for.
    func testWorkSleepAndWait() {
        let clock = DeviceClock(timeout: 60)
        let start = clock.now()
        let timed = clock.work { burn(0.02) }
        XCTAssertEqual(timed.end - timed.start, 0.02, accuracy: 0.005)
        let beforeSleep = clock.now()
        sleepHost(seconds: 0.05)
        XCTAssertEqual(clock.now() - beforeSleep, 0, accuracy: 0.002, "a host sleep costs no device time")
        clock.wait(until: start + 7)
        XCTAssertEqual(clock.now(), start + 7, accuracy: 0.002)
        clock.wait(until: start + 1)
        XCTAssertEqual(clock.now(), start + 7, accuracy: 0.002, "waiting for a past event does not move the clock back")
    }

    /// Work charged by a model (a GEMM from sampled costs) advances the clock by its
    /// modelled seconds, not by the CPU it used.
    func testModelledWorkCostsItsModelledSeconds() {
        let clock = DeviceClock(timeout: 60)
        let timed = clock.work {
            let start = threadCPUSeconds()
            burn(0.02)
            comet_charge_modelled(threadCPUSeconds() - start, 0.5)
        }
        XCTAssertEqual(timed.end - timed.start, 0.5, accuracy: 0.003)
    }

    /// With the host's CPU ignored only modelled work moves the clock: CPU outside it
    /// costs nothing, so the clock is the sum of the modelled seconds exactly.
    func testIgnoredHostCPUChargesModelledWorkAlone() {
        let clock = DeviceClock(timeout: 60, hostCPU: .ignored)
        let start = clock.now()
        burn(0.02)
        XCTAssertEqual(clock.now(), start, "CPU outside modelled work costs no device time")
        let timed = clock.work {
            burn(0.01)
            let before = threadCPUSeconds()
            burn(0.01)
            comet_charge_modelled(threadCPUSeconds() - before, 0.25)
        }
        XCTAssertEqual(timed.start, start)
        XCTAssertEqual(timed.end, start + 0.25)
    }

    /// A waiting engine's clock becomes the stamp of the event it waited for, and the
    /// thread that joins the workers takes the latest worker's time.
    func testWaitingEngineTakesTheEventsStamp() throws {
        let clock = DeviceClock(timeout: 60)
        let pool = WorkerPool(onFailure: .rethrow, clock: clock)
        let flag = ThreadFlag()
        let seen = Mutex<[Double]>([0, 0])
        let origin = clock.now()
        try pool.run(2) { index in
            if index == 0 {
                clock.wait(until: origin + 3)  // the event happens at 3 s
                flag.raise(to: 1, at: clock.now())
                let now = clock.now()  // never read a device clock holding a lock: it may give the turn away
                seen.withLock { $0[0] = now }
            } else {
                flag.wait(toReach: 1, on: clock, timeout: 60, "the producer")
                let now = clock.now()
                seen.withLock { $0[1] = now }
                clock.wait(until: clock.now() + 2)
            }
        }
        let times = seen.withLock { $0 }
        XCTAssertEqual(times[0] - origin, 3, accuracy: 0.002)
        XCTAssertEqual(times[1] - origin, 3, accuracy: 0.002, "the waiter moved to the event's stamp")
        XCTAssertEqual(clock.now() - origin, 5, accuracy: 0.005, "the join takes the latest worker's time")
    }

    /// Engines run in device-time order whatever the host does: the engine whose
    /// clock is earliest always goes first, so the interleaving is the same every run.
    func testEnginesTakeTurnsInTimeOrder() throws {
        let clock = DeviceClock(timeout: 60)
        let pool = WorkerPool(onFailure: .rethrow, clock: clock)
        let log = Mutex<[String]>([])
        let origin = clock.now()
        try pool.run(2) { index in
            let step = index == 0 ? 1.0 : 1.5
            for k in 1...4 {
                clock.wait(until: origin + Double(k) * step)
                log.withLock { $0.append("\(index)@\(Double(k) * step)") }
                if index == 1 { sleepHost(seconds: 0.002) }  // the host favours engine 0; device time does not care
            }
        }
        // At 3.0 both are due: the lower engine goes first.
        XCTAssertEqual(log.withLock { $0 }, ["0@1.0", "1@1.5", "0@2.0", "0@3.0", "1@3.0", "0@4.0", "1@4.5", "1@6.0"])
    }

    /// A stamp and the start of a piece of work charge the engine's CPU but keep the
    /// turn, even past another engine's clock; the next `now()` (or the end of the
    /// work) gives it to the engine that is now earlier.
    func testStampsAndWorkStartsKeepTheTurn() throws {
        let clock = DeviceClock(timeout: 60)
        let pool = WorkerPool(onFailure: .rethrow, clock: clock)
        let log = Mutex<[String]>([])
        let burn: @Sendable (Double) -> Void = { seconds in
            let end = threadCPUSeconds() + seconds
            while threadCPUSeconds() < end {}
        }
        let origin = clock.now()
        try pool.run(2) { index in
            if index == 0 {
                clock.wait(until: origin + 1)
                burn(0.02)  // past engine 2's 1.01 s, not charged yet
                _ = clock.stamp()
                log.withLock { $0.append("0 stamped") }
                _ = clock.now()
                log.withLock { $0.append("0 read now") }
                clock.wait(until: origin + 2)
                burn(0.02)
                _ = clock.work { log.withLock { $0.append("0 working") } }
                log.withLock { $0.append("0 worked") }
            } else {
                clock.wait(until: origin + 1.01)
                log.withLock { $0.append("1 at 1.01") }
                clock.wait(until: origin + 2.01)
                log.withLock { $0.append("1 at 2.01") }
            }
        }
        XCTAssertEqual(log.withLock { $0 }, ["0 stamped", "1 at 1.01", "0 read now", "0 working", "1 at 2.01", "0 worked"])
    }
}
