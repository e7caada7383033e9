import CometTraining
import Foundation
import XCTest

/// Every configuration shipped in configs/ loads as a training configuration and is
/// valid for the default layout on 8 ranks (EP = 8), as `comet-train --config` needs.
final class ShippedConfigTests: XCTestCase {
    /// configs/ at the repository root, found from this file's path.
    private let configs = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("configs")

    func testEveryShippedConfigLoadsAndValidatesOnEightRanks() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: configs.path).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertTrue(names.contains("moe-heavy.json"), "configs/ holds \(names)")
        for name in names {
            let path = configs.appendingPathComponent(name).path
            XCTAssertNoThrow(try TrainConfig.load(from: path).validate(ranks: 8, expertParallel: 8), name)
        }
    }
}
