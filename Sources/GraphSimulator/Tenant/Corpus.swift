import Foundation

/// Real text and real files found on this machine, from which message bodies and attachments
/// are made: licence texts and package documentation for words, documentation and toolchain
/// files for attachments. A machine without them still works, with a built-in word list and
/// generated attachment bytes.
struct Corpus: Sendable {
    let words: [String]
    let attachments: [Attachment]
    /// About 4 MiB of running text from `words`, wrapped at 76 columns with CRLF line ends:
    /// message bodies are runs of its lines and generated files are slices of it, so making
    /// content costs a copy, not a string build (the simulator must outrun the client).
    let text: [UInt8]
    /// Offsets in `text` where lines start (plus its end).
    let lineStarts: [Int]

    struct Attachment: Sendable {
        var path: String
        var name: String
        var size: Int
        var mimeType: String
    }

    static let fallbackWords = """
        please review the attached quarterly report before our meeting on thursday the budget for \
        the next period includes travel hardware licences and the contract renewal with our supplier \
        let me know if anything is missing thanks and regards
        """.split(separator: " ").map(String.init)

    static func load(seed: UInt64, maxAttachments: Int = 48) -> Corpus {
        var words: [String] = []
        for dir in ["/usr/share/common-licenses"] {
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
                guard let text = try? String(contentsOfFile: dir + "/" + name, encoding: .utf8) else { continue }
                words += text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
                    .map(String.init).filter { $0.allSatisfy { $0.isASCII && !$0.isNewline } && $0.count < 40 }
                if words.count > 200_000 { break }
            }
        }
        if words.count < 1000 { words = fallbackWords }

        var candidates: [Attachment] = []
        for root in ["/usr/share/doc", "/opt/swift/usr/share/doc", "/opt/swift/usr/share/swift"] {
            guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
            while let rel = walker.nextObject() as? String, candidates.count < 4000 {
                let path = root + "/" + rel
                guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
                      attrs[.type] as? FileAttributeType == .typeRegular,
                      let size = attrs[.size] as? Int, size >= 2_000, size <= 1_500_000 else { continue }
                let name = (rel as NSString).lastPathComponent
                candidates.append(Attachment(path: path, name: name, size: size, mimeType: mimeType(name)))
            }
        }
        candidates.sort { $0.path < $1.path }
        var rng = SimRandom(seed ^ 0xA77A)
        var picked: [Attachment] = []
        while picked.count < maxAttachments && !candidates.isEmpty {
            picked.append(candidates.remove(at: rng.below(candidates.count)))
        }
        var text: [UInt8] = []
        var lineStarts: [Int] = [0]
        text.reserveCapacity(4 << 20)
        var line = 0
        while text.count < 4 << 20 {
            let w = words[rng.below(words.count)].utf8
            if line > 0 && line + 1 + w.count > 76 {
                text += [13, 10]
                lineStarts.append(text.count)
                line = 0
            }
            if line > 0 { text.append(32); line += 1 }
            text += w
            line += w.count
        }
        text += [13, 10]
        lineStarts.append(text.count)
        return Corpus(words: words, attachments: picked, text: text, lineStarts: lineStarts)
    }

    /// `count` whole CRLF-terminated lines of text chosen by `seed`.
    func lines(seed: UInt64, count: Int) -> ArraySlice<UInt8> {
        let n = min(count, lineStarts.count - 2)
        let first = Int(SimRandom.mix(seed, 11) % UInt64(lineStarts.count - 1 - n))
        return text[lineStarts[first]..<lineStarts[first + n]]
    }

    /// `size` bytes of text chosen by `seed` (at most the corpus's size).
    func slice(seed: UInt64, size: Int) -> ArraySlice<UInt8> {
        let n = min(size, text.count)
        let start = Int(SimRandom.mix(seed, 13) % UInt64(text.count - n + 1))
        return text[start..<(start + n)]
    }

    static func mimeType(_ name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "pdf": "application/pdf"
        case "png": "image/png"
        case "jpg", "jpeg": "image/jpeg"
        case "gz": "application/gzip"
        case "html", "htm": "text/html"
        case "txt", "md", "": "text/plain"
        case "json": "application/json"
        default: "application/octet-stream"
        }
    }

    /// The bytes of attachment `i` (generated when the file went away since the corpus was read).
    func attachmentBytes(_ i: Int) -> [UInt8] {
        let a = attachments[i % attachments.count]
        if let data = FileManager.default.contents(atPath: a.path) { return [UInt8](data) }
        var rng = SimRandom(UInt64(i))
        return (0..<a.size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// `count` words of running text from `seed`.
    func text(seed: UInt64, words count: Int) -> String {
        var rng = SimRandom(seed)
        var start = rng.below(words.count)
        var out = ""
        out.reserveCapacity(count * 7)
        for i in 0..<count {
            if i > 0 { out += " " }
            out += words[start % words.count]
            start += rng.chance(0.05) ? rng.below(words.count) : 1
        }
        return out
    }
}
