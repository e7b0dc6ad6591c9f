// swift-tools-version:5.9
// skesl: distributed data-parallel trainer for SKESL (Qian & Han, 2023).
import PackageDescription
import Foundation

// Hot loops are written over unsafe buffers; release builds drop Swift's
// overflow and bounds checks there (inputs are validated at the boundaries).
// Element-wise kernels vectorise for the build machine's CPU family: AVX2 + FMA
// (Haswell, 2013, and later) on x86-64 by default; SKESL_TARGET_CPU=generic builds for
// any x86-64, or name another LLVM CPU. Debug builds (tests) optimise these modules too.
#if arch(x86_64)
let targetCPU = ProcessInfo.processInfo.environment["SKESL_TARGET_CPU"] ?? "haswell"
#else
let targetCPU = ProcessInfo.processInfo.environment["SKESL_TARGET_CPU"] ?? "generic"
#endif
let cpuFlags = targetCPU == "generic" ? [] : ["-target-cpu", targetCPU]
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"] + cpuFlags, .when(configuration: .release)),
                            .unsafeFlags(["-O"] + cpuFlags, .when(configuration: .debug))]

let package = Package(
    name: "skesl",
    products: [
        .executable(name: "skesl", targets: ["skesl"]),
        .library(name: "SKESLTraining", targets: ["SKESLTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // Native libraries, found with pkg-config.
        .systemLibrary(name: "COpenMPI", path: "Sources/COpenMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CFFTW", path: "Sources/CFFTW", pkgConfig: "fftw3",
                       providers: [.apt(["libfftw3-dev"])]),
        .systemLibrary(name: "CSndfile", path: "Sources/CSndfile", pkgConfig: "sndfile",
                       providers: [.apt(["libsndfile1-dev"])]),
        // C macros of MPI and HDF5 as functions.
        .target(name: "CShim", dependencies: ["COpenMPI", "CHDF5"]),

        // The one writer of diagnostics to stderr: levels, rank prefix.
        .target(name: "SKESLLog"),
        // Tensor kernels (forward and backward), keyed random numbers.
        .target(name: "SKESLKernels", dependencies: ["COpenBLAS"], swiftSettings: fast),
        // A small typed layer over the HDF5 C API.
        .target(name: "SKESLHDF5", dependencies: ["CShim", "CHDF5"], swiftSettings: fast),
        // BERT, cross-modal encoder, heads, flat parameters, optimisers, weights files.
        .target(name: "SKESLModel", dependencies: ["SKESLKernels", "SKESLHDF5"], swiftSettings: fast),
        // Tokenizer, VADER lexicon, sentiment word masking.
        .target(name: "SKESLText", dependencies: ["SKESLKernels"]),
        // Hugging Face BERT checkpoints (safetensors, config.json, vocabulary) to and from
        // skesl weights files (SKESLModel's WeightsFile), the tokenizer stored beside them.
        .target(name: "SKESLHuggingFace", dependencies: ["SKESLModel", "SKESLText", "SKESLHDF5"]),
        // Sharded HDF5 feature stores, importers, synthetic corpus, loader.
        .target(name: "SKESLStore", dependencies: ["SKESLKernels", "SKESLHDF5", "SKESLLog"]),
        // Audio decoding and the reference's librosa features (ZCR, MFCC, chroma_cqt), natively.
        .target(name: "SKESLAudio", dependencies: ["CFFTW", "CSndfile"], swiftSettings: fast),
        // `skesl extract`: audio trees to feature stores over MPI ranks, resumable.
        .target(name: "SKESLExtract", dependencies: ["SKESLAudio", "SKESLStore", "SKESLHDF5", "SKESLLog"]),
        // MPI communicator, collectives, bucketed gradient all-reduce.
        .target(name: "SKESLDistributed", dependencies: ["CShim", "COpenMPI", "SKESLLog"], swiftSettings: fast),
        // What a run reports: the metrics log and its records, regression metrics, the
        // progress display, the HTML/SVG report, the step-time summary.
        .target(name: "SKESLReporting", dependencies: ["SKESLKernels", "SKESLLog"]),
        // Training loop and step, checkpoints, configs, signals.
        .target(name: "SKESLTraining",
                dependencies: ["CShim", "SKESLKernels", "SKESLHDF5", "SKESLModel", "SKESLText", "SKESLHuggingFace",
                               "SKESLStore", "SKESLDistributed", "SKESLLog", "SKESLReporting", .product(name: "Yams", package: "Yams")]),
        // `skesl bench`: the training step at reference shapes, and the cached step.
        .target(name: "SKESLBenchmark", dependencies: ["SKESLTraining", "SKESLModel", "SKESLStore", "SKESLKernels"]),
        // The command line.
        .executableTarget(name: "skesl",
                          dependencies: ["SKESLTraining", "SKESLBenchmark", "SKESLReporting", "SKESLText", "SKESLHuggingFace", "SKESLStore", "SKESLExtract", "SKESLModel", "SKESLDistributed", "SKESLKernels", "SKESLHDF5", "SKESLLog",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Multi-rank checks and MPI benchmarks, run under mpirun by DistributedTests.
        .executableTarget(name: "skesl-mpitest", dependencies: ["SKESLDistributed", "SKESLKernels", "COpenBLAS"],
                          swiftSettings: fast),

        // Helpers shared by test targets (busy load for race tests, text fixtures).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "LogTests", dependencies: ["SKESLLog"]),
        .testTarget(name: "KernelTests", dependencies: ["SKESLKernels", "TestSupport"]),
        .testTarget(name: "HDF5Tests", dependencies: ["SKESLHDF5"]),
        .testTarget(name: "ModelTests", dependencies: ["SKESLModel", "SKESLHDF5", "SKESLKernels"]),
        .testTarget(name: "TextTests", dependencies: ["SKESLText", "SKESLModel", "SKESLHDF5", "TestSupport"]),
        .testTarget(name: "HuggingFaceTests", dependencies: ["SKESLHuggingFace", "SKESLText", "SKESLModel", "SKESLHDF5", "TestSupport"]),
        .testTarget(name: "AudioTests", dependencies: ["SKESLAudio", "SKESLHDF5"]),
        .testTarget(name: "StoreTests", dependencies: ["SKESLStore", "SKESLHDF5", "TestSupport"]),
        .testTarget(name: "ReportingTests", dependencies: ["SKESLReporting"]),
        // The built `skesl` run on tiny stores and models (CLITests, TrainingTests).
        .target(name: "CLISupport", dependencies: ["SKESLTraining", "SKESLStore", "SKESLHDF5", "SKESLModel", "SKESLReporting"],
                path: "Tests/CLISupport"),
        .testTarget(name: "CLITests", dependencies: ["CLISupport", "SKESLHDF5", "SKESLStore", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["CLISupport", "SKESLTraining", "SKESLReporting", "SKESLDistributed", "SKESLModel", "SKESLKernels"]),
        .testTarget(name: "DistributedTests", dependencies: ["SKESLDistributed", "skesl-mpitest", "TestSupport"]),
    ]
)
