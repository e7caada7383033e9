import CMPI
import CometCore
import CometShim

#if canImport(Glibc)
import Glibc
#endif

/// Why the MPI runtime could not start.
public enum MPIRuntimeError: Error, CustomStringConvertible {
    /// The library gives less than `MPI_THREAD_MULTIPLE`; comet's communicator and
    /// GEMM threads all call MPI.
    case threadLevelTooLow(provided: Int32)

    public var description: String {
        switch self {
        case .threadLevelTooLow(let provided):
            "this MPI library provides thread level \(provided), but comet needs MPI_THREAD_MULTIPLE (\(MPI_THREAD_MULTIPLE)): "
                + "build Open MPI with --enable-mpi-thread-multiple"
        }
    }
}

/// Process-wide MPI start-up and shut-down.
public enum MPIRuntime {
    /// Default seconds a wait may last before it aborts the job.
    public static let defaultWaitTimeout = 120.0

    /// Initialises MPI with `MPI_THREAD_MULTIPLE` and returns the world communicator.
    ///
    /// Errors on the world come back as `MPIError` instead of aborting.
    /// - Parameter waitTimeout: seconds any of comet's waits may last before the job aborts.
    public static func initialize(waitTimeout: Double = defaultWaitTimeout) throws -> Communicator {
        if spansNodes {
            chooseOneSidedAcrossNodes()
        } else {
            // comet's waits give the core away themselves (`Backoff`). Open MPI's own
            // yielding, which it turns on when ranks outnumber cores, would also make
            // every MPI_Win_flush on one node (a memory fence) give the core away: 25x
            // slower puts at 8 ranks on 2 cores. Across nodes it is the other way round
            // (`chooseOneSidedAcrossNodes`).
            setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0)
        }
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_MULTIPLE), &provided), "MPI_Init_thread")
        try check(MPI_Comm_set_errhandler(comet_comm_world(), comet_errors_return()), "MPI_Comm_set_errhandler")
        if provided < Int32(MPI_THREAD_MULTIPLE) {
            finalize()
            throw MPIRuntimeError.threadLevelTooLow(provided: provided)
        }
        return try Communicator(handle: comet_comm_world(), waitTimeout: waitTimeout)
    }

    /// Whether the job's ranks span more than one node, as Open MPI's launcher tells
    /// every rank before `MPI_Init` (false when it does not say).
    static var spansNodes: Bool {
        guard let size = launcherNumber("OMPI_COMM_WORLD_SIZE"), let local = launcherNumber("OMPI_COMM_WORLD_LOCAL_SIZE") else {
            return false
        }
        return local < size
    }

    /// A number the launcher put in the environment.
    private static func launcherNumber(_ name: String) -> Int? { getenv(name).flatMap { Int(String(cString: $0)) } }

    /// Across nodes a window is `MPI_Win_allocate` with puts, gets and atomics, which in
    /// Open MPI 4.1 over TCP only the UCX one-sided component provides with
    /// `MPI_THREAD_MULTIPLE` (osc/rdma needs RDMA hardware, osc/pt2pt refuses threads;
    /// Debian's openmpi-mca-params.conf turns ucx off): ask for it, with sm for windows
    /// within a node, unless the user chose. UCX logs as errors its endpoints' last
    /// flush to peers that finalized first, at the end of every job: only fatal UCX
    /// messages are shown unless the user set `UCX_LOG_LEVEL`.
    ///
    /// A flush then spins in MPI's progress until the target, which applies the put
    /// only when it calls MPI itself, has answered. When the node's ranks outnumber
    /// its cores, spinning ranks pass the core on only at the end of each time slice:
    /// a comet layer forward took 2.2 s across the two test hosts (4 ranks on 2 cores
    /// each), 0.14 s with Open MPI's yielding on (`mpi_yield_when_idle`), which Open
    /// MPI does not turn on by itself when the hostfile gives each node more slots
    /// than cores. So it is turned on then, unless the user chose.
    private static func chooseOneSidedAcrossNodes() {
        setenv("OMPI_MCA_osc", "ucx,sm", 0)
        setenv("UCX_LOG_LEVEL", "fatal", 0)
        if launcherNumber("OMPI_COMM_WORLD_LOCAL_SIZE") ?? 1 > sysconf(Int32(_SC_NPROCESSORS_ONLN)) {
            setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0)
        }
    }

    /// Whether `MPI_Init_thread` has run and `MPI_Finalize` has not.
    public static var isActive: Bool {
        var initialized: Int32 = 0
        var finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        return initialized != 0 && finalized == 0
    }

    /// Finalises MPI if it is active; safe to call more than once.
    public static func finalize() {
        if isActive { MPI_Finalize() }
    }

    /// The library's version line, e.g. "Open MPI v4.1.4, ...".
    public static var libraryVersion: String {
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&text, &length)
        let line = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return line.split(separator: ",").first.map(String.init) ?? line
    }
}
