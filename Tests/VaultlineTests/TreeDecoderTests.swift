import Foundation
import Testing
@testable import VaultlineCore

@Suite("Tree decoding")
struct TreeDecoderTests {
    /// Trees with every field, names and metadata full of what JSON must escape.
    static func randomTree(_ rng: inout SplitMix64) -> Tree {
        let alphabet: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{1F}", "é", "日本", "🙂", "\u{7F}", "{", "}", ":", ","]
        func text(_ n: Int) -> String { (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined() }
        var nodes: [TreeNode] = []
        for i in 0..<Int(rng.next() % 40) {
            let kind: TreeNode.Kind = [.file, .dir, .symlink][i % 3]
            var n = TreeNode(name: "\(i)-" + text(Int(rng.next() % 12)), kind: kind)
            if rng.next() % 2 == 0 { n.mode = UInt32(truncatingIfNeeded: rng.next()) }
            if rng.next() % 2 == 0 { n.mtimeNs = Int64(bitPattern: rng.next()) }
            if rng.next() % 3 == 0 { n.uid = UInt32.max; n.gid = 0 }
            if rng.next() % 3 == 0 { n.inode = UInt64.max; n.device = rng.next() }
            if kind == .file {
                n.size = rng.next()
                n.content = (0..<Int(rng.next() % 4)).map { _ in String(repeating: "ab", count: 32) }
            }
            if kind == .dir { n.subtree = String(repeating: "0f", count: 32) }
            if kind == .symlink { n.linkTarget = "../" + text(5) }
            if rng.next() % 2 == 0 {
                n.metadata = ["graph.id": text(20), "graph.item": #"{"subject":"\#(text(30))","x":[1,2.5,null]}"#, "": ""]
            }
            if rng.next() % 5 == 0 { n.damaged = text(8) }
            nodes.append(n)
        }
        return Tree(nodes: nodes)
    }

    @Test func decodesWhatTheEncoderWritesAsJSONDecoderDoes() throws {
        var rng = SplitMix64(seed: 2026)
        for round in 0..<300 {
            var tree = Self.randomTree(&rng)
            if round % 10 == 0 { tree = Tree(parts: [String(repeating: "1e", count: 32), String(repeating: "2f", count: 32)]) }
            let bytes = try tree.encoded()
            let reference = try StoredJSON.decode(Tree.self, from: bytes, object: "reference")
            #expect(try Tree.decode(bytes, id: "t") == reference, "round \(round)")
            #expect(reference == tree)
        }
    }

    @Test func takesNullsUnknownKeysAndSpacesAndRefusesWhatJSONDecoderRefuses() throws {
        let ok = #" { "nodes" : [ { "name":"a\u00e9\ud83d\ude42","kind":"file","size":null,"future":{"x":[true,false,null,-1.5e3]},"mtimeNs":-9223372036854775808 } ] , "later": 1 } "#
        let tree = try Tree.decode(Array(ok.utf8), id: "t")
        #expect(tree.nodes.map(\.name) == ["aé🙂"])
        #expect(tree.nodes[0].size == nil && tree.nodes[0].mtimeNs == Int64.min)
        #expect(try StoredJSON.decode(Tree.self, from: Array(ok.utf8), object: "r") == tree)

        let bad = [
            #"{"nodes":[{"kind":"file"}]}"#,  // no name
            #"{"nodes":[{"name":"a"}]}"#,  // no kind
            #"{"nodes":[{"name":"a","kind":"fifo"}]}"#,
            #"{"nodes":[{"name":"a","kind":"file","size":-1}]}"#,
            #"{"nodes":[{"name":"a","kind":"file","size":18446744073709551616}]}"#,
            #"{"nodes":[{"name":"a","kind":"file","mode":4294967296}]}"#,
            #"{"nodes":[{"name":"a","kind":"file","size":1.5}]}"#,
            #"{"nodes":[{"name":"a","kind":"file","size":"1"}]}"#,
            #"{"nodes":[{"name":"\ud800","kind":"file"}]}"#,  // unpaired surrogate
            #"{"nodes":[{"name":"\x","kind":"file"}]}"#,
            "{\"nodes\":[{\"name\":\"a\u{1}\",\"kind\":\"file\"}]}",  // a raw control character
            #"{"nodes":[{"name":"a","kind":"file"}]"#,  // unterminated
            #"{"nodes":[{"name":"a","kind":"file"}]} x"#,
            #"{"parts":[]}"#,  // no nodes
            #"{"nodes":[{"name":"a","kind":"file","metadata":{"k":1}}]}"#,
            #"[]"#, "", "nul",
        ]
        for text in bad {
            expectError(VaultlineError.self, .corrupt, "\(text)") { try Tree.decode(Array(text.utf8), id: "t") }
            #expect((try? StoredJSON.decode(Tree.self, from: Array(text.utf8), object: "r")) == nil, "JSONDecoder takes \(text)")
        }
        // A key twice (the format fuzzer found JSONDecoder keeping the first, this reader the
        // last): refused.
        for twice in [#"{"nodes":[{"name":"a","kind":"file","kind":"dir"}]}"#, #"{"nodes":[{"name":"a","kind":"file","metadata":{"k":"1","k":"2"}}]}"#,
                      #"{"nodes":[],"nodes":[{"name":"a","kind":"file"}]}"#] {
            expectError(VaultlineError.self, .corrupt, "\(twice)") { try Tree.decode(Array(twice.utf8), id: "t") }
        }
        // Invalid UTF-8 in a string.
        expectError(VaultlineError.self, .corrupt) { try Tree.decode(Array(#"{"nodes":[{"name":""#.utf8) + [0xC3, 0x28] + Array(#"","kind":"file"}]}"#.utf8), id: "t") }
        // Deep nesting in an unknown key ends in an error, not a stack overflow.
        let deep = #"{"x":"# + String(repeating: "[", count: 100_000) + "}"
        expectError(VaultlineError.self, .corrupt) { try Tree.decode(Array(deep.utf8), id: "t") }
    }

    @Test func everyTruncationOfATreeIsRefused() throws {
        var rng = SplitMix64(seed: 7)
        var tree = Self.randomTree(&rng)
        while tree.nodes.count < 5 { tree = Self.randomTree(&rng) }
        let bytes = try tree.encoded()
        for cut in 0..<bytes.count {
            expectError(VaultlineError.self, .corrupt) { try Tree.decode(Array(bytes[..<cut]), id: "t") }
        }
    }
}
