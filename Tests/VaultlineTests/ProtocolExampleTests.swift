import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// docs/PROTOCOL.md's worked example of a handshake, byte for byte against the encoder: the
/// frame header as section 2 lays it out (what FrameEncoder writes) and the payload as
/// `Frame.hello`/`Frame.welcome` make it.
@Suite("Protocol worked example")
struct ProtocolExampleTests {
    static func wire(_ frame: Frame) -> [UInt8] {
        var header = ByteBuffer()
        header.writeInteger(UInt32(5 + frame.payload.readableBytes))
        header.writeInteger(frame.type.rawValue)
        header.writeInteger(frame.requestID)
        return Array(header.readableBytesView) + Array(frame.payload.readableBytesView)
    }

    /// As the document prints bytes: 16 to a line after a 4-digit hex offset.
    static func dump(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: bytes.count, by: 16).map { start in
            String(format: "%04x  ", start) + bytes[start..<min(start + 16, bytes.count)].map { String(format: "%02x", $0) }.joined(separator: " ")
        }.joined(separator: "\n")
    }

    @Test func theHandshakeInTheDocumentIsWhatTheEncoderWrites() throws {
        let doc = try String(contentsOf: TestData.repositoryRoot.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        let id = String(repeating: "00112233445566778899aabbccddeeff", count: 2)
        let hello = Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: id, clientName: "site-a"))
        let welcome = Frame.welcome(Welcome(version: 1, capabilities: 0, role: .primary, maxFrame: UInt32(ProtocolLimits.maxFrameLength),
                                            chunkSize: UInt32(ProtocolLimits.chunkSize), maxTransfers: ProtocolLimits.maxTransfers, serverName: "site-b"))
        let helloBytes = Self.wire(hello), welcomeBytes = Self.wire(welcome)
        #expect(helloBytes.count == 99 && welcomeBytes.count == 38)
        #expect(doc.contains("```\n" + Self.dump(helloBytes) + "\n```"), "HELLO:\n\(Self.dump(helloBytes))")
        #expect(doc.contains("```\n" + Self.dump(welcomeBytes) + "\n```"), "WELCOME:\n\(Self.dump(welcomeBytes))")
        // And the decoder reads them back.
        let back = try hello.decodeHello()
        #expect(back.repositoryID == id && back.clientName == "site-a" && back.minVersion == 1 && back.maxVersion == 1)
    }
}
