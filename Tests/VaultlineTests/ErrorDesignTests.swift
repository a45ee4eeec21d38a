import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineReplication

/// The one error design of the three libraries (`ContextualError`): codes compared by value,
/// the object and cause in the message, the raising line kept, and the protocol's codes as
/// docs/PROTOCOL.md numbers them.
@Suite("Errors")
struct ErrorDesignTests {
    @Test func codesCompareByValueAndTheLocationIsTheRaisingLine() {
        let line: UInt = #line + 1
        let error = VaultlineError(.corrupt, "blob does not authenticate", object: "packs/ab", cause: VaultlineError(.crypto, "tag"))
        #expect(error.code == .corrupt && error.code != .io)
        #expect(error.location.line == line && error.location.fileID.hasSuffix("ErrorDesignTests.swift"))
        #expect(error.description == "packs/ab: blob does not authenticate (tag)")
        #expect(error.debugDescription.hasPrefix("[corrupt] packs/ab:") && error.debugDescription.hasSuffix("ErrorDesignTests.swift:\(line)"))
        // A system call's errno picks the code.
        #expect(VaultlineError.system("open", object: "f", errno: ENOSPC).code == .noSpace)
        #expect(VaultlineError.system("open", object: "f", errno: ENOENT).code == .notFound)
        #expect(VaultlineError.system("open", object: "f", errno: EIO).code == .io)
        // Graph's errors leave the query (it may hold tokens) out of the object.
        let graph = GraphError(.notFound, status: 404, graphCode: "itemNotFound", "gone", url: "https://g/v1.0/me/messages/1?$skiptoken=secret")
        #expect(graph.object == "https://g/v1.0/me/messages/1" && !graph.description.contains("secret"))
        #expect(graph.code == .notFound && graph.graphCode == "itemNotFound")
        // Any of them, handled through the protocol as the CLI does.
        let all: [any ContextualError] = [error, graph, ReplicationError(.busy, "later")]
        #expect(all.map { "\($0.code)" } == ["corrupt", "notFound", "busy"])
    }

    @Test func protocolCodesKeepTheirNumbersAndAnUnknownOneKeepsItsOwn() throws {
        let table: [(ReplicationError.Code, UInt16)] = [
            (.version, 1), (.malformed, 2), (.unknownType, 3), (.frameTooLarge, 4), (.forbidden, 5), (.invalidName, 6),
            (.conflict, 7), (.hashMismatch, 8), (.noSpace, 9), (.io, 10), (.notFound, 11), (.busy, 12), (.shuttingDown, 13),
        ]
        for (code, number) in table {
            #expect(code.wireValue == number && code.isSentOnTheWire)
            let back = Frame.error(code, "m", requestID: 3).decodeError()
            #expect(back.code == code && back.fromPeer && back.message == "m")
        }
        // Local codes never travel; a receiver that sends one is not believed to mean it.
        #expect(!ReplicationError.Code.connection.isSentOnTheWire && ReplicationError.Code.connection.wireValue == 100)
        #expect(ReceiverSession.wireCode(ReplicationError(.certificate, "x")) == .io)
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(100))
        payload.writeString16("hostile", maxLength: 100)
        let forged = Frame(.error, requestID: 1, payload: payload).decodeError()
        #expect(forged.code != .connection && forged.code.wireValue == 100 && "\(forged.code)" == "code 100")
        // A newer receiver's code: kept with its number, and not retried as if busy.
        let newer = ReplicationError.Code(wireValue: 77)
        #expect(newer.description == "code 77" && newer.wireValue == 77 && newer != .io)
        #expect(!ReplicationSender.isRetryable(ReplicationError(newer, "new", fromPeer: true)))
    }
}
