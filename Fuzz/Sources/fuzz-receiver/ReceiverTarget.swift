#if canImport(Glibc)
import Glibc
#endif
import Dispatch
@_spi(Fuzzing) import VaultlineReplication

/// One receiver for the whole run, rooted on tmpfs where there is one (commits fsync).
let harness: ReceiverFuzzing = {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    let root = base + "/vaultline-fuzz-receiver-\(getpid())"
    do { return try ReceiverFuzzing(root: root) } catch { fatalError("cannot start the fuzzed receiver: \(error)") }
}()

/// VAULTLINE_FUZZ_SEEDS=DIR writes the seed corpus there and exits (tools/fuzz does this).
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    if let dir = getenv("VAULTLINE_FUZZ_SEEDS").map({ String(cString: $0) }) {
        writeSeeds(ReceiverFuzzing.seeds(), to: dir)
        exit(0)
    }
    _ = harness
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let done = DispatchSemaphore(value: 0)
    Task {
        await harness.run(input)
        done.signal()
    }
    done.wait()
    return 0
}

func writeSeeds(_ seeds: [[UInt8]], to dir: String) {
    for (i, seed) in seeds.enumerated() {
        guard let file = fopen(dir + "/seed-\(i)", "wb") else { continue }
        _ = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
}

// SwiftPM links an executable's entry point as <module>_main; this one hands the process to
// libFuzzer's driver (the fuzzer's own `main` is then not linked in).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("fuzz_receiver_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOne)
}
