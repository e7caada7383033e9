// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "comet",
    products: [
        .executable(name: "comet-train", targets: ["comet-train"]),
        .executable(name: "comet-bench", targets: ["comet-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries, found through pkg-config.
        .systemLibrary(
            name: "CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // MPI's predefined handles, shared-memory atomics and CPU features for Swift.
        .target(name: "CometShim", dependencies: ["CMPI"]),
        // Element-wise kernels (activations) that the C compiler vectorises.
        .target(name: "CometVector"),

        // Modelled GPUs (H200, H800, L20): what GEMMs, SM splits, copies and element-wise kernels cost on them,
        // from H200 measurements compiled into the library.
        .target(
            name: "CometDevices",
            exclude: ["Data/README.md"],
            resources: [
                .embedInCode("Data/h200_bf16_expert_gemm.csv"),
                .embedInCode("Data/h200_gemm_sm_split.csv"),
                .embedInCode("Data/h200_copy_by_ctas.csv"),
            ]),
        // Clocks, the timeline, worker threads and waits, the one error type for bad input, JSON and files.
        .target(name: "CometCore", dependencies: ["CometShim"]),
        .target(name: "CometMPI", dependencies: ["CMPI", "CometShim", "CometCore"]),
        .target(name: "CometKernels", dependencies: ["COpenBLAS", "CometShim", "CometVector"]),
        .target(name: "CometMoE", dependencies: ["CometCore", "CometMPI", "CometKernels"]),
        .target(name: "CometTraining", dependencies: ["CometCore", "CometMPI", "CometKernels", "CometMoE", "CometVector"]),
        .target(name: "CometTelemetry", dependencies: ["CometCore", "CometMPI"]),
        .target(
            name: "CometLaunch",
            dependencies: [
                "CometCore", "CometMPI", "CometKernels", "CometShim", "CometMoE", "CometDevices",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .executableTarget(name: "comet-train", dependencies: ["CometCore", "CometLaunch", "CometTraining", "CometShim", "CometTelemetry"]),
        .executableTarget(name: "comet-bench", dependencies: ["CometCore", "CometDevices", "CometLaunch", "CometMoE", "CometTraining", "CometTelemetry"]),
        // Multi-rank scenarios that the test suite runs under mpirun.
        .executableTarget(name: "comet-probe", dependencies: ["CometCore", "CometLaunch", "CometMoE"]),

        .target(name: "TestSupport", dependencies: ["CometKernels"], path: "Tests/TestSupport"),
        .testTarget(name: "CometKernelsTests", dependencies: ["CometKernels", "TestSupport"]),
        .testTarget(name: "CometMPITests", dependencies: ["CometMPI"]),
        .testTarget(name: "CometTrainingTests", dependencies: ["CometCore", "CometTraining", "CometKernels", "TestSupport"]),
        .testTarget(name: "CometCoreTests", dependencies: ["CometCore"]),
        .testTarget(name: "CometMoETests", dependencies: ["CometCore", "CometMoE", "CometKernels", "TestSupport"]),
        .testTarget(name: "CometDevicesTests", dependencies: ["CometDevices"]),
        .testTarget(name: "MultiRankTests", dependencies: ["TestSupport"]),
    ]
)
