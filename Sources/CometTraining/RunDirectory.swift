import CometCore
import CometMPI
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Checks of a run directory that every rank makes alike before any rank writes
/// (the job shares one file system, as it does for `--config` and the checkpoint),
/// so that a path that cannot hold a run is one uniform error, not a crash on rank 0.
public enum RunDirectory {
    /// Checks that `path` names a run directory to continue from: an existing
    /// directory holding a checkpoint. `label` says how the user gave it, e.g.
    /// "--resume runs/x", and starts every message.
    public static func checkResumable(_ path: String, label: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw InputError("\(label) does not exist")
        }
        guard isDirectory.boolValue else { throw InputError("\(label) is a file, not a run directory") }
        let checkpoint = (path as NSString).appendingPathComponent(Checkpoint.fileName)
        guard FileManager.default.fileExists(atPath: checkpoint) else {
            throw InputError("\(label) holds no \(Checkpoint.fileName) to continue from")
        }
    }

    /// The lines of metrics.jsonl `logged` up to step `last`, without any line cut
    /// short (a killed run may leave one).
    static func metricsLines(_ logged: Data, through last: Int) -> Data {
        struct Step: Decodable { let step: Int }
        let kept = logged.split(separator: 0x0A).filter { line in
            (try? JSONDecoder().decode(Step.self, from: Data(line))).map { $0.step <= last } ?? false
        }
        return Data(kept.map { Data($0) + [0x0A] }.joined())
    }

    /// Checks that a run can be written to `path`: a directory this process may write
    /// into, or one it can create because its nearest existing ancestor is such a
    /// directory. `label` says how the user gave it, e.g. "--out runs/x".
    public static func checkWritable(_ path: String, label: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw InputError("\(label) is a file, not a run directory") }
            if let problem = writeProblem(path) { throw InputError("\(label) cannot be written to: \(problem)") }
            return
        }
        guard let (ancestor, isDirectory) = nearestExistingAncestor(of: path) else {
            throw InputError("\(label) cannot be created: the directory that would hold it does not exist")
        }
        guard isDirectory else { throw InputError("\(label) cannot be created: \(ancestor) is a file, not a directory") }
        if let problem = writeProblem(ancestor) { throw InputError("\(label) cannot be created in \(ancestor): \(problem)") }
    }

    /// The closest of `path`'s enclosing directories, as the user would write it
    /// ("runs" for "runs/x/y" when only runs exists, "." for "x"), that exists, and
    /// whether it is a directory; nil when none does (a deleted working directory).
    static func nearestExistingAncestor(of path: String) -> (path: String, isDirectory: Bool)? {
        var ancestor = path
        while true {
            let parent = (ancestor as NSString).deletingLastPathComponent
            guard parent != ancestor, !(parent.isEmpty && ancestor == ".") else { return nil }
            ancestor = parent.isEmpty ? "." : parent
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) { return (ancestor, isDirectory.boolValue) }
        }
    }

    /// Why this process may not create entries in directory `path` (the system's
    /// words), or nil when it may.
    static func writeProblem(_ path: String) -> String? {
        access(path, W_OK | X_OK) == 0 ? nil : String(cString: strerror(errno))
    }

    /// What went wrong in a Foundation file operation, in the system's words
    /// ("Not a directory") rather than as the raw `NSError`.
    static func fileProblem(_ error: any Error) -> String {
        let error = error as NSError
        // On Linux the underlying error is not always an NSError until bridged.
        let posix = error.domain == NSPOSIXErrorDomain ? error : (error.userInfo[NSUnderlyingErrorKey] as? any Error).map { $0 as NSError }
        if let posix, posix.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(posix.code))) }
        return error.localizedDescription
    }
}
