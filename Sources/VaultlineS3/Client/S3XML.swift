import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import VaultlineCore

/// One page of a `ListObjectsV2` answer.
public struct S3ListPage: Sendable, Equatable {
    public struct Object: Sendable, Equatable {
        public var key: String
        public var size: Int64

        public init(key: String, size: Int64) {
            self.key = key
            self.size = size
        }
    }

    public var objects: [Object] = []
    public var isTruncated = false
    public var nextContinuationToken: String?
}

/// The `<Error>` body S3 answers a failed request with.
public struct S3ErrorBody: Sendable, Equatable {
    public var code: String
    public var message: String
}

/// Readers of the XML bodies S3 answers with. A body is hostile until checked: at most
/// ``maximumBodySize`` bytes, no DTD or entities, sizes that are non-negative integers, and
/// an answer that is not what S3 sends is an error naming what is wrong (`corrupt`).
public enum S3XML {
    /// A `ListObjectsV2` page of 1000 keys is about 300 KB; anything far beyond is not S3.
    public static let maximumBodySize = 8 << 20

    public static func listPage(_ body: [UInt8], object: String) throws -> S3ListPage {
        let elements = try parse(body, object: object)
        guard elements.root == "ListBucketResult" else {
            throw VaultlineError(.corrupt, "the listing's answer is <\(elements.root.prefix(40))>, not <ListBucketResult>", object: object)
        }
        var page = S3ListPage()
        page.isTruncated = elements.values["ListBucketResult/IsTruncated"]?.first == "true"
        page.nextContinuationToken = elements.values["ListBucketResult/NextContinuationToken"]?.first
        let keys = elements.values["ListBucketResult/Contents/Key"] ?? []
        let sizes = elements.values["ListBucketResult/Contents/Size"] ?? []
        guard keys.count == sizes.count, keys.count == elements.contents else {
            throw VaultlineError(.corrupt, "a listed object without its key or size", object: object)
        }
        for (key, size) in zip(keys, sizes) {
            guard let bytes = Int64(size), bytes >= 0 else {
                throw VaultlineError(.corrupt, "listed size \(size.prefix(40)) is not a size", object: object)
            }
            page.objects.append(.init(key: key, size: bytes))
        }
        if page.isTruncated && page.nextContinuationToken == nil {
            throw VaultlineError(.corrupt, "a truncated listing without a continuation token", object: object)
        }
        return page
    }

    /// The error body, or nil when the body is not one (an empty 403 to a HEAD, say).
    public static func errorBody(_ body: [UInt8]) -> S3ErrorBody? {
        guard let elements = try? parse(body, object: ""), elements.root == "Error" else { return nil }
        return S3ErrorBody(code: elements.values["Error/Code"]?.first ?? "", message: elements.values["Error/Message"]?.first ?? "")
    }

    struct Elements {
        var root = ""
        /// Text by element path (`ListBucketResult/Contents/Key`), in document order.
        var values: [String: [String]] = [:]
        var contents = 0
        /// The root's children that hold fields (`Contents`, `Version`, `DeleteMarker`), each
        /// as its fields' texts by name, in document order: a record's fields stay together.
        var records: [String: [[String: String]]] = [:]
    }

    static func parse(_ body: [UInt8], object: String) throws -> Elements {
        guard body.count <= maximumBodySize else {
            throw VaultlineError(.corrupt, "an XML answer of \(body.count) bytes, more than \(maximumBodySize)", object: object)
        }
        // S3 never sends a document type declaration; refusing one outright keeps entity
        // expansion (a few hundred bytes that grow to gigabytes) out of the parser.
        if Self.contains(Array("<!DOCTYPE".utf8), in: body) || Self.contains(Array("<!ENTITY".utf8), in: body) {
            throw VaultlineError(.corrupt, "the answer declares a document type or entities, which S3 never does", object: object)
        }
        let reader = Reader()
        let parser = XMLParser(data: Data(body))
        parser.shouldResolveExternalEntities = false
        parser.delegate = reader
        guard parser.parse(), reader.failure == nil else {
            throw VaultlineError(.corrupt, "the answer is not well-formed XML: \(reader.failure ?? parser.parserError.map { "\($0)" } ?? "?")", object: object)
        }
        // Foundation's parser on Linux accepts a document cut off inside open elements (an
        // answer truncated by a dropped connection): every element must be closed.
        guard reader.path.isEmpty, !reader.elements.root.isEmpty else {
            throw VaultlineError(.corrupt, "the answer ends inside <\(reader.path.last?.prefix(40) ?? "")>: cut short", object: object)
        }
        return reader.elements
    }

    static func contains(_ needle: [UInt8], in haystack: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, let first = needle.first else { return false }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }

    final class Reader: NSObject, XMLParserDelegate {
        var elements = Elements()
        var path: [String] = []
        var text = ""
        var failure: String?
        var record: [String: String] = [:]

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            if path.isEmpty { elements.root = name }
            path.append(name)
            guard path.count <= 8 else {
                failure = "nested deeper than S3 nests"
                parser.abortParsing()
                return
            }
            if path == ["ListBucketResult", "Contents"] { elements.contents += 1 }
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            elements.values[path.joined(separator: "/"), default: []].append(text)
            if path.count == 3 { record[name] = text }
            if path.count == 2 {
                if !record.isEmpty { elements.records[name, default: []].append(record) }
                record = [:]
            }
            text = ""
            _ = path.popLast()
        }

        func parser(_ parser: XMLParser, foundInternalSubset name: String, externalID: String?, systemID: String?) {
            failure = "a document type declaration"
            parser.abortParsing()
        }

        func parser(_ parser: XMLParser, resolveExternalEntityName name: String, systemID: String?) -> Data? {
            failure = "an external entity"
            parser.abortParsing()
            return nil
        }
    }
}
