import CLZ4
import CZstd

/// How a blob's plaintext is compressed. The raw value is stored in the blob (docs/FORMAT.md).
public enum Codec: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case none = 0
    case zstd = 1
    case lz4 = 2

    public var description: String {
        switch self {
        case .none: "none"
        case .zstd: "zstd"
        case .lz4: "lz4"
        }
    }

    public init?(name: String) {
        switch name.lowercased() {
        case "none", "off": self = .none
        case "zstd": self = .zstd
        case "lz4": self = .lz4
        default: return nil
        }
    }
}

/// A compressor for one thread: keeps the zstd context between calls (allocating one per blob
/// costs more than compressing a small blob).
public final class Compressor {
    public let codec: Codec
    public let level: Int32
    private let cctx: OpaquePointer?

    public init(codec: Codec, level: Int = 3) throws {
        self.codec = codec
        self.level = Int32(level)
        if codec == .zstd {
            guard let c = ZSTD_createCCtx() else { throw VaultlineError(.compression, "ZSTD_createCCtx failed") }
            cctx = c
            guard vl_zstd_is_error(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, Int32(level))) == 0 else {
                ZSTD_freeCCtx(c)
                throw VaultlineError(.invalidArgument, "zstd level \(level) is not valid")
            }
            if level <= 3 {
                // Level 3's strategy and search, with match tables sized for ~1 MiB blobs: hash 2^16,
                // chain 2^15 (384 KiB instead of 768 KiB, which overflows a 1 MiB L2). Measured on the
                // toolchain's binaries in 1 MiB blocks: 11% faster, 1.1% larger (docs/FORMAT.md §5).
                _ = ZSTD_CCtx_setParameter(c, ZSTD_c_hashLog, 16)
                _ = ZSTD_CCtx_setParameter(c, ZSTD_c_chainLog, 15)
            }
        } else {
            cctx = nil
        }
    }

    deinit { if let cctx { ZSTD_freeCCtx(cctx) } }

    /// The largest output `compress` can produce for `size` input bytes.
    public func bound(_ size: Int) -> Int {
        switch codec {
        case .none: size
        case .zstd: ZSTD_compressBound(size)
        case .lz4: Int(vl_lz4_compress_bound(Int32(size)))
        }
    }

    /// Compresses `src` into `dst` (at least `bound(src.count)` bytes); returns the length written.
    public func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws -> Int {
        switch codec {
        case .none:
            if src.count > 0 { dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: src.count) }
            return src.count
        case .zstd:
            let n = ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
            if vl_zstd_is_error(n) != 0 {
                throw VaultlineError(.compression, "zstd: \(String(cString: ZSTD_getErrorName(n)))")
            }
            return n
        case .lz4:
            let n = LZ4_compress_default(
                src.baseAddress?.assumingMemoryBound(to: CChar.self),
                dst.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(dst.count))
            if n <= 0 && src.count > 0 { throw VaultlineError(.compression, "LZ4_compress_default failed") }
            return Int(n)
        }
    }
}

/// Decompression; stateless apart from an optional reused zstd context.
public final class Decompressor {
    private let dctx: OpaquePointer?

    public init() { dctx = ZSTD_createDCtx() }
    deinit { if let dctx { ZSTD_freeDCtx(dctx) } }

    /// Decompresses `src` (compressed with `codec`) into `dst`, which must be exactly the raw length.
    public func decompress(_ src: UnsafeRawBufferPointer, codec: Codec, into dst: UnsafeMutableRawBufferPointer) throws {
        switch codec {
        case .none:
            guard src.count == dst.count else {
                throw VaultlineError(.corrupt, "stored length \(src.count) differs from raw length \(dst.count)")
            }
            if src.count > 0 { dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: src.count) }
        case .zstd:
            let n = dctx.map { ZSTD_decompressDCtx($0, dst.baseAddress, dst.count, src.baseAddress, src.count) }
                ?? ZSTD_decompress(dst.baseAddress, dst.count, src.baseAddress, src.count)
            if vl_zstd_is_error(n) != 0 {
                throw VaultlineError(.compression, "zstd: \(String(cString: ZSTD_getErrorName(n)))")
            }
            guard n == dst.count else {
                throw VaultlineError(.corrupt, "zstd produced \(n) bytes, expected \(dst.count)")
            }
        case .lz4:
            let n = LZ4_decompress_safe(
                src.baseAddress?.assumingMemoryBound(to: CChar.self),
                dst.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(dst.count))
            guard n == dst.count else {
                throw VaultlineError(.corrupt, "lz4 produced \(n) bytes, expected \(dst.count)")
            }
        }
    }
}

/// Facts read from a zstd frame header.
public enum ZstdFrame {
    /// The decompressed size the frame declares, or nil when absent or invalid.
    public static func contentSize(_ frame: UnsafeRawBufferPointer) -> Int? {
        let n = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if n == vl_zstd_contentsize_error() || n == vl_zstd_contentsize_unknown() { return nil }
        return Int(exactly: n)
    }
}
