import NIOCore
import VaultlineCore

/// The kinds of file that replicate, with their wire values (docs/PROTOCOL.md, "Frames").
public enum ReplicatedKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case config = 1
    case key = 2
    case pack = 3
    case index = 4
    case snapshot = 5

    public var fileKind: FileKind {
        switch self {
        case .config: .config
        case .key: .key
        case .pack: .pack
        case .index: .index
        case .snapshot: .snapshot
        }
    }

    /// The order of a replication pass: a kind starts once all before it are durable.
    public static let pushOrder: [[ReplicatedKind]] = [[.config, .key, .pack], [.index], [.snapshot]]

    public var description: String { fileKind.rawValue }
}

/// A file as the protocol names it: its kind and the SHA-256 of its bytes.
public struct FileRef: Hashable, Sendable, CustomStringConvertible {
    public var kind: ReplicatedKind
    public var name: Bytes32

    public init(_ kind: ReplicatedKind, _ name: Bytes32) {
        self.kind = kind
        self.name = name
    }

    public var description: String { kind == .config ? "config" : "\(kind.fileKind.rawValue)/\(name.hex)" }
}

/// Roles granted by a site certificate (docs/PROTOCOL.md, "Transport and authentication").
public enum SiteRole: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case primary = 1
    case replica = 2
    case monitor = 3

    public var description: String {
        switch self {
        case .primary: "primary"
        case .replica: "replica"
        case .monitor: "monitor"
        }
    }

    public init?(name: String) {
        guard let r = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = r
    }

    public var mayPush: Bool { self == .primary }
    public var mayRead: Bool { self != .monitor }
}

public struct Hello: Sendable {
    public static let magic: UInt32 = 0x564C_5250  // "VLRP"
    public var minVersion: UInt16
    public var maxVersion: UInt16
    public var capabilities: UInt64
    public var repositoryID: String
    public var clientName: String
}

public struct Welcome: Sendable {
    public var version: UInt16
    public var capabilities: UInt64
    public var role: SiteRole
    public var maxFrame: UInt32
    public var chunkSize: UInt32
    public var maxTransfers: UInt16
    public var serverName: String
}

/// Reading and writing payload fields; every read names what was missing.
extension ByteBuffer {
    /// Writes a `string` field of at most `maxLength` bytes, cut at a character boundary so
    /// that what is sent stays valid UTF-8.
    mutating func writeString16(_ value: String, maxLength: Int = Int(UInt16.max)) {
        var end = value.startIndex, count = 0
        while end < value.endIndex {
            let next = value.index(after: end)
            let width = value.utf8.distance(from: end, to: next)
            guard count + width <= min(maxLength, Int(UInt16.max)) else { break }
            count += width
            end = next
        }
        writeInteger(UInt16(count))
        writeBytes(value[..<end].utf8)
    }

    /// A `string` field: u16 byte count, then UTF-8, at most `maxLength` bytes. Invalid UTF-8
    /// is `malformed` (no replacement characters are made up).
    mutating func readString16(_ what: String, maxLength: Int = Int(UInt16.max)) throws -> String {
        let n = Int(try readInt(UInt16.self, what))
        guard n <= maxLength else {
            throw ReplicationError(.malformed, "\(what) is \(n) bytes, more than the \(maxLength) allowed")
        }
        guard let bytes = readBytes(length: n) else { throw Self.short(what) }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw ReplicationError(.malformed, "\(what) is not valid UTF-8")
        }
        return s
    }

    /// A u64 offset or size, converted with a check: values above ``ProtocolLimits/maxFileSize``
    /// (among them every value of 2^63 and more, which no Int64 holds) are `malformed`.
    mutating func readFileOffset(_ what: String) throws -> Int64 {
        try Self.fileOffset(try readInt(UInt64.self, what), what)
    }

    static func fileOffset(_ raw: UInt64, _ what: String) throws -> Int64 {
        guard let value = Int64(exactly: raw), value <= ProtocolLimits.maxFileSize else {
            throw ReplicationError(.malformed, "\(what) \(raw) is above the largest file size, \(ProtocolLimits.maxFileSize) bytes")
        }
        return value
    }

    mutating func readInt<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        guard let v = readInteger(as: T.self) else { throw Self.short(what) }
        return v
    }

    mutating func writeName(_ name: Bytes32) {
        writeInteger(name.a); writeInteger(name.b); writeInteger(name.c); writeInteger(name.d)
    }

    mutating func readName(_ what: String) throws -> Bytes32 {
        guard readableBytes >= 32 else { throw Self.short(what) }
        return Bytes32(a: readInteger()!, b: readInteger()!, c: readInteger()!, d: readInteger()!)
    }

    mutating func readKind() throws -> ReplicatedKind {
        let raw = try readInt(UInt8.self, "kind")
        guard let kind = ReplicatedKind(rawValue: raw) else {
            throw ReplicationError(.invalidName, "unknown file kind \(raw)")
        }
        return kind
    }

    mutating func readFileRef() throws -> FileRef {
        let kind = try readKind()
        return FileRef(kind, try readName("name"))
    }

    mutating func writeFileRef(_ ref: FileRef) {
        writeInteger(ref.kind.rawValue)
        writeName(ref.name)
    }

    static func short(_ what: String) -> ReplicationError {
        ReplicationError(.malformed, "payload ends before \(what)")
    }
}

extension Frame {
    static func hello(_ h: Hello) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(Hello.magic)
        b.writeInteger(h.minVersion)
        b.writeInteger(h.maxVersion)
        b.writeInteger(h.capabilities)
        b.writeString16(h.repositoryID)
        b.writeString16(h.clientName, maxLength: ProtocolLimits.maxNameLength)
        return Frame(.hello, requestID: 0, payload: b)
    }

    func decodeHello() throws -> Hello {
        var b = payload
        guard try b.readInt(UInt32.self, "magic") == Hello.magic else {
            throw ReplicationError(.malformed, "HELLO without the VLRP magic: not a vaultline peer")
        }
        return Hello(
            minVersion: try b.readInt(UInt16.self, "min version"),
            maxVersion: try b.readInt(UInt16.self, "max version"),
            capabilities: try b.readInt(UInt64.self, "capabilities"),
            repositoryID: try b.readString16("repository id", maxLength: 64),
            clientName: try b.readString16("client name", maxLength: ProtocolLimits.maxNameLength))
    }

    static func welcome(_ w: Welcome) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(w.version)
        b.writeInteger(w.capabilities)
        b.writeInteger(w.role.rawValue)
        b.writeInteger(w.maxFrame)
        b.writeInteger(w.chunkSize)
        b.writeInteger(w.maxTransfers)
        b.writeString16(w.serverName, maxLength: ProtocolLimits.maxNameLength)
        return Frame(.welcome, requestID: 0, payload: b)
    }

    func decodeWelcome() throws -> Welcome {
        var b = payload
        let version = try b.readInt(UInt16.self, "version")
        let caps = try b.readInt(UInt64.self, "capabilities")
        guard let role = SiteRole(rawValue: try b.readInt(UInt8.self, "role")) else {
            throw ReplicationError(.malformed, "WELCOME with an unknown role")
        }
        return Welcome(
            version: version, capabilities: caps, role: role,
            maxFrame: try b.readInt(UInt32.self, "max frame"),
            chunkSize: try b.readInt(UInt32.self, "chunk size"),
            maxTransfers: try b.readInt(UInt16.self, "max transfers"),
            serverName: try b.readString16("server name", maxLength: ProtocolLimits.maxNameLength))
    }

    static func error(_ code: ReplicationError.Code, _ message: String, requestID: UInt32) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(code.wireValue)
        b.writeString16(message, maxLength: 4096)
        return Frame(.error, requestID: requestID, payload: b)
    }

    /// The error an ERROR frame carries, as a ``ReplicationError`` from the peer.
    func decodeError() -> ReplicationError {
        var b = payload
        let raw = b.readInteger(as: UInt16.self) ?? ReplicationError.Code.malformed.wireValue
        // Peer text: escaped here, so that no log line or terminal it reaches can be forged.
        let message = PeerText.escaped((try? b.readString16("message")) ?? "(no message)", maxLength: 1024)
        return ReplicationError(ReplicationError.Code(wireValue: raw), message, fromPeer: true)
    }

    static func offer(_ ref: FileRef, size: Int64, requestID: UInt32, held: Bool = false) -> Frame {
        var b = ByteBuffer()
        b.writeFileRef(ref)
        b.writeInteger(UInt64(size))
        return Frame(held ? .offerHeld : .offer, requestID: requestID, payload: b)
    }

    static func u64(_ type: FrameType, _ value: UInt64, requestID: UInt32) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(value)
        return Frame(type, requestID: requestID, payload: b)
    }

    static func summary(_ kind: ReplicatedKind, bits: Int, requestID: UInt32) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(kind.rawValue)
        b.writeInteger(UInt8(bits))
        return Frame(.summary, requestID: requestID, payload: b)
    }

    static func get(_ ref: FileRef, offset: Int64, requestID: UInt32) -> Frame {
        var b = ByteBuffer()
        b.writeFileRef(ref)
        b.writeInteger(UInt64(offset))
        return Frame(.get, requestID: requestID, payload: b)
    }

    /// The single u64 payload of ACCEPT and FILE.
    func decodeU64() throws -> UInt64 {
        var b = payload
        return try b.readInt(UInt64.self, "\(type) value")
    }

    /// The single u64 payload of ACCEPT and FILE as an offset or size, checked against
    /// ``ProtocolLimits/maxFileSize``.
    func decodeFileOffset() throws -> Int64 {
        try ByteBuffer.fileOffset(try decodeU64(), "\(type) value")
    }
}
