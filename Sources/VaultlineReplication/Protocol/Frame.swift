import NIOCore

/// One protocol frame (docs/PROTOCOL.md, "Frames"): a type, the request id it belongs to, and
/// a payload whose layout depends on the type.
public struct Frame: Sendable {
    public var type: FrameType
    public var requestID: UInt32
    public var payload: ByteBuffer

    public init(_ type: FrameType, requestID: UInt32, payload: ByteBuffer = ByteBuffer()) {
        self.type = type
        self.requestID = requestID
        self.payload = payload
    }
}

public enum FrameType: UInt8, Sendable {
    case hello = 0x01
    case welcome = 0x02
    case error = 0x03
    case summary = 0x10
    case summaryReply = 0x11
    case list = 0x12
    case listReply = 0x13
    case offer = 0x20
    case accept = 0x21
    case have = 0x22
    case data = 0x23
    case offerHeld = 0x24
    case durable = 0x25
    case get = 0x30
    case file = 0x31
}

/// Protocol constants of version 1.
public enum ProtocolLimits {
    public static let version: UInt16 = 1
    /// Largest DATA payload.
    public static let chunkSize = 1 << 20
    /// Largest value of a frame's length field: a chunk plus room for headers.
    public static let maxFrameLength = (1 << 20) + 4096
    public static let maxTransfers: UInt16 = 16
    /// Capability bit: the receiver takes OFFER_HELD (docs/PROTOCOL.md, "Transfer").
    public static let heldOffers: UInt64 = 1
    /// The capabilities this implementation speaks, both as sender and as receiver.
    public static let capabilities: UInt64 = heldOffers
    public static let maxListLimit: UInt32 = 32_768
    public static let headerSize = 9
    /// Largest file an OFFER may announce, and the bound of every offset and size on the
    /// wire (1 TiB): a value above it is `malformed`, whatever its type could hold.
    public static let maxFileSize: Int64 = 1 << 40
    /// Largest `config` an OFFER may announce: a repository's config is a small JSON file.
    public static let maxConfigSize: Int64 = 1 << 16
    /// Largest HELLO client name and WELCOME server name, in UTF-8 bytes.
    public static let maxNameLength = 255
    /// GET requests a server streams at once on one connection; it reads no further frame
    /// of that connection until one of them has ended (back-pressure).
    public static let maxGetsInFlight = 4
}

/// Writes the 9-byte header and the payload as two buffers, so the payload is not copied.
final class FrameEncoder: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = Frame
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = Self.unwrapOutboundIn(data)
        var header = context.channel.allocator.buffer(capacity: ProtocolLimits.headerSize)
        header.writeInteger(UInt32(5 + frame.payload.readableBytes))
        header.writeInteger(frame.type.rawValue)
        header.writeInteger(frame.requestID)
        if frame.payload.readableBytes == 0 {
            context.write(Self.wrapOutboundOut(header), promise: promise)
        } else {
            context.write(Self.wrapOutboundOut(header), promise: nil)
            context.write(Self.wrapOutboundOut(frame.payload), promise: promise)
        }
    }
}
