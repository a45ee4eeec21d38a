import Foundation
import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// `check --read-data`, deep and keyless scrub find every damaged pack; scrub keeps its rate
/// and its cursor.
@Suite struct VerificationTests {
    /// A repository of many small packs: 48 random files of 150 KiB (about 8 packs of 1 MiB).
    static func manyPacks() throws -> (TemporaryDirectory, Repository, String) {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 77)
        try FileSystem.makeDirectories(dir.path + "/src/docs")
        for i in 0..<48 { try Fixtures.writeFile(dir.path + "/src/docs/file-\(i).bin", rng.bytes(150 << 10)) }
        let snap = try Fixtures.backup(repo, [dir.path + "/src"]).snapshotID
        return (dir, repo, snap)
    }

    static func flipBit(_ path: String, at offset: Int64, bit: Int) throws {
        chmod(path, 0o600)
        let fd = try FileDescriptor(open: path, flags: O_RDWR)
        var b = try fd.pread(count: 1, at: offset)
        b[0] ^= UInt8(1 << bit)
        _ = b.withUnsafeBytes { Glibc.pwrite(fd.raw, $0.baseAddress, 1, off_t(offset)) }
    }

    static func scrub(_ repo: Repository, _ depth: Scrubber.Depth, state: String, configure: (inout Scrubber.Options) -> Void = { _ in }) throws -> Scrubber.Report {
        var o = Scrubber.Options(statePath: state)
        o.depth = depth
        configure(&o)
        return try Scrubber(backend: repo.backend, key: depth == .deep ? repo.key : nil, options: o).run()
    }

    @Test func bitRotIsFoundByCheckAndBothScrubs() throws {
        let (dir, repo, snap) = try Self.manyPacks()
        let backend = repo.backend as! LocalBackend
        let packs = try backend.list(.pack).sorted()
        #expect(packs.count >= 8)
        var rng = SplitMix64(seed: 4242)
        for trial in 0..<4 {
            // Flip one random bit at a random offset in 1...4 random packs.
            var chosen = Set<String>()
            let n = 1 + Int(rng.next() % 4)
            while chosen.count < n { chosen.insert(packs[Int(rng.next() % UInt64(packs.count))]) }
            var flips: [(String, Int64, Int)] = []
            for name in chosen {
                let size = try backend.stat(.pack, name)!
                let flip = (name, Int64(rng.next() % UInt64(size)), Int(rng.next() % 8))
                try Self.flipBit(backend.path(.pack, flip.0), at: flip.1, bit: flip.2)
                flips.append(flip)
            }
            let check = try Checker(repository: repo).run(readData: true)
            #expect(Set(check.damagedPacks) == chosen, "trial \(trial): check")
            #expect(check.damagedBlobs > 0 && check.affected.first?.snapshot == snap, "trial \(trial): affected items named")
            for depth in [Scrubber.Depth.deep, .keyless] {
                let report = try Self.scrub(repo, depth, state: dir.path + "/scrub-\(trial)-\(depth)")
                #expect(Set(report.damaged.map(\.file)) == Set(chosen.map { "packs/\($0)" }), "trial \(trial): \(depth) scrub")
                #expect(report.passCompleted)
            }
            for (name, offset, bit) in flips { try Self.flipBit(backend.path(.pack, name), at: offset, bit: bit) }
        }
        #expect(try Checker(repository: repo).run(readData: true).ok)
    }

    @Test func affectedItemsNameTheDamagedFiles() throws {
        let (dir, repo, snap) = try Self.manyPacks()
        defer { withExtendedLifetime(dir) {} }
        try repo.loadIndex()
        // A missing data pack: the files whose blobs it held are listed, and only those.
        let pack = repo.index.packIDs.first { $0.type == .data }!.id
        let lost = try repo.backend.read(.pack, pack.hex)
        try repo.backend.delete(.pack, pack.hex)
        let report = try Checker(repository: repo).run(Checker.Options(readData: false))
        #expect(report.damagedPacks == [pack.hex])
        let lostIDs = Set(try PackReader.parse(
            trailer: Array(lost.suffix(PackFormat.trailerSize)), size: Int64(lost.count), object: "lost", key: repo.key
        ) { o, n in Array(lost[Int(o)..<(Int(o) + n)]) }.entries.map { String($0.id.hex.prefix(48)) })
        #expect(Set(report.damagedBlobIDs) == lostIDs, "every blob of the missing pack is named")
        let paths = try #require(report.affected.first { $0.snapshot == snap }).paths
        #expect(!paths.isEmpty && paths.allSatisfy { $0.contains("/docs/file-") }, "\(paths)")
        // Each listed file really is unrestorable and each other file restores.
        let restorer = Restorer(repository: repo)
        for i in 0..<48 {
            let path = try Self.snapshotPath(repo, snap, "file-\(i).bin")
            let listed = paths.contains(path)
            var restored = true
            do { try restorer.restore(snapshotID: snap, path: path, target: dir.path + "/out-\(i)") } catch {
                restored = false
                if !listed { Issue.record("\(path): \(error)") }
            }
            #expect(listed != restored, "\(path)")
        }
    }

    static func snapshotPath(_ repo: Repository, _ snap: String, _ name: String) throws -> String {
        var tree = try repo.loadTree(try repo.loadSnapshot(snap).tree)
        var path = ""
        while let node = tree.nodes.first {
            if let hit = tree.node(named: name) { return path + "/" + hit.name }
            guard let sub = node.subtree else { break }
            path += "/" + node.name
            tree = try repo.loadTree(sub)
        }
        throw VaultlineError(.notFound, "no \(name) in snapshot")
    }

    @Test func subsetsPartitionThePacks() throws {
        let names = (0..<500).map { SHA256.hash(Array("pack \($0)".utf8)).hex }
        var seen = [String: Int]()
        for n in 1...5 {
            for name in names where try VerificationSubset(parsing: "\(n)/5").contains(name) { seen[name, default: 0] += 1 }
        }
        #expect(seen.count == names.count && seen.values.allSatisfy { $0 == 1 })
        let tenth = names.filter { (try? VerificationSubset(parsing: "10%").contains($0)) == true }.count
        #expect((30...70).contains(tenth))
        expectError(VaultlineError.self, .invalidArgument) { try VerificationSubset(parsing: "6/5") }
        expectError(VaultlineError.self, .invalidArgument) { try VerificationSubset(parsing: "0%") }
    }

    @Test func pacedScrubReadsWhatKeepsThePassOnSchedule() throws {
        let (dir, repo, _) = try Self.manyPacks()
        let state = dir.path + "/paced.json"
        // A pass that started half a period ago: the paced run reads about half, then stops.
        let started = Scrubber.State(passStarted: Date().addingTimeInterval(-500))
        try FileSystem.replaceFile(state, with: try StoredJSON.encode(started))
        let half = try Self.scrub(repo, .keyless, state: state) { $0.paced = true; $0.period = 1000; $0.workers = 1 }
        let share = Double(half.bytesRead) / Double(half.bytesTotal)
        #expect(!half.passCompleted && share >= 0.5 && share < 0.75, "read \(share) of the repository")
        // On schedule already: the next run reads one batch at most.
        let again = try Self.scrub(repo, .keyless, state: state) { $0.paced = true; $0.period = 1000; $0.workers = 1 }
        #expect(again.bytesRead <= UInt64(256 << 20) && again.filesRead <= 1 + half.filesTotal / 4)
    }

    @Test func scrubKeepsItsRateAndResumesFromItsCursor() throws {
        let (dir, repo, _) = try Self.manyPacks()
        let state = dir.path + "/scrub-state.json"
        let rate = 3.0 * 1024 * 1024
        // First run: stopped after about a second by --max-duration; the cursor is kept.
        let first = try Self.scrub(repo, .keyless, state: state) { $0.bytesPerSecond = rate; $0.maxSeconds = 1; $0.workers = 2 }
        #expect(!first.passCompleted && first.cursor != nil && first.filesRead > 0)
        let firstRate = first.bytesPerSecond
        // Second run: continues from the cursor to the end of the pass.
        let second = try Self.scrub(repo, .keyless, state: state) { $0.bytesPerSecond = rate; $0.workers = 2 }
        #expect(second.passCompleted)
        #expect(first.filesRead + second.filesRead == second.filesTotal, "each file read once per pass")
        let secondRate = second.bytesPerSecond
        #expect(abs(secondRate - rate) / rate < 0.05, "scrub ran at \(secondRate) B/s, set \(rate)")
        #expect(firstRate <= rate * 1.05)
        // A new pass starts from the beginning.
        let third = try Self.scrub(repo, .keyless, state: state)
        #expect(third.passCompleted && third.filesRead == third.filesTotal)
    }
}
