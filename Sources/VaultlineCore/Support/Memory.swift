#if canImport(Glibc)
import Glibc
#endif

/// Process memory helpers.
public enum Memory {
    /// Returns memory that the allocator holds free to the system (glibc's `malloc_trim(0)`,
    /// looked up at run time since the Glibc module does not export it). Called after one-off
    /// peaks such as loading the index, whose growth leaves freed buffers in the heap.
    public static func returnFreedToSystem() {
        #if canImport(Glibc)
        typealias Trim = @convention(c) (Int) -> Int32
        if let symbol = dlsym(nil, "malloc_trim") {
            _ = unsafeBitCast(symbol, to: Trim.self)(0)
        }
        #endif
    }

    /// The resident set size of this process, from /proc/self/statm (0 where unavailable).
    public static func residentBytes() -> Int {
        guard let bytes = try? FileSystem.readProcFile("/proc/self/statm") else { return 0 }
        let fields = String(decoding: bytes, as: UTF8.self).split(separator: " ")
        return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
    }
}

extension FileSystem {
    /// Reads a /proc file (whose stat size is 0) until its end.
    static func readProcFile(_ path: String) throws -> [UInt8] {
        let fd = try FileDescriptor(open: path, flags: O_RDONLY)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try buf.withUnsafeMutableBytes { try fd.readSome(into: $0) }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }
}
