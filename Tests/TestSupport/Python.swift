import Foundation
import XCTest

/// Runs `python3 -c script arguments...`; returns its exit status and standard output.
public func runPython(_ script: String, _ arguments: [String] = []) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text.trimmingCharacters(in: .whitespacesAndNewlines))
}

/// Skips the test unless python3 with the safetensors package is there (scripts/setup installs it).
public func requirePythonSafetensors() throws {
    let available = (try? runPython("import safetensors.numpy").status) == 0
    if !available { throw XCTSkip("python3 with the safetensors package is not available") }
}
