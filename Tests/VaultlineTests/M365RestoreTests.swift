import Foundation
import GraphSimulator
import QuickXorHash
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

@Suite("QuickXorHash")
struct QuickXorHashTests {
    @Test func matchesRclone() throws {
        let dir = TemporaryDirectory("quickxor")
        var rng = SplitMix64(seed: 11)
        let sizes = [0, 1, 6, 19, 20, 21, 159, 160, 161, 319, 320, 321, 4096, 1 << 20, (1 << 20) + 7]
        for size in sizes {
            let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let path = dir.path + "/f\(size)"
            try FileSystem.replaceFile(path, with: bytes)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/rclone")
            p.arguments = ["hashsum", "quickxor", "--base64", path]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            // rclone writes the URL-safe alphabet; Graph the standard one.
            let theirs = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: " ").first
                .map { $0.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/") }
            #expect(QuickXorHash.hash(bytes) == theirs, "\(size) bytes")
            // Fed in uneven pieces, the same.
            var h = QuickXorHash()
            var at = 0
            while at < bytes.count {
                let n = min(bytes.count - at, 1 + Int(rng.next() % 500))
                h.update(Array(bytes[at..<(at + n)]))
                at += n
            }
            #expect(h.base64() == theirs, "\(size) bytes in pieces")
        }
    }
}

@Suite("Restore into Microsoft 365: files")
struct DriveRestoreTests {
    static func restore(_ f: GraphFixture, _ snapshot: String, _ path: String,
                        _ configure: (inout M365Restore.Options) -> Void = { _ in }) async throws -> M365Restore.Summary {
        var options = M365Restore.Options()
        options.journalDirectory = f.dir.path + "/journals"
        options.fragmentSize = 327_680  // several fragments per file
        configure(&options)
        try f.repo.loadIndex()
        return try await M365Restore(repository: f.repo, client: f.client, options: options).run(snapshotID: snapshot, path: path)
    }

    /// Every file of a snapshot's drive directory: size, content and modification time.
    static func files(_ f: GraphFixture, _ snapshot: String, _ path: String) throws -> [String: (bytes: [UInt8], mtimeNs: Int64?)] {
        try f.repo.loadIndex()
        var out: [String: (bytes: [UInt8], mtimeNs: Int64?)] = [:]
        func walk(_ tree: String, _ prefix: String) throws {
            for node in try f.repo.loadTree(tree).nodes {
                if node.kind == .dir, let sub = node.subtree { try walk(sub, prefix + node.name + "/") }
                if node.kind == .file { out[prefix + node.name] = (try f.repo.readContent(of: node), node.mtimeNs) }
            }
        }
        try walk(try Restorer(repository: f.repo).folderTree(snapshotID: snapshot, path: path), "")
        return out
    }

    @Test func aRansomedOneDriveComesBackInPlaceAndWhatWasUntouchedIsNotWritten() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let before = f.sim.tenant.driveFiles(upn: upn)
        let first = try await f.backup()
        let encrypted = f.sim.tenant.ransomware(upn: upn, share: 0.5).encrypted
        let ransomed = f.sim.tenant.driveFiles(upn: upn)
        let deleted = try #require(before.keys.sorted().first { $0.contains("/") && ransomed[$0] == before[$0] })
        #expect(f.sim.tenant.deleteFile(upn: upn, path: deleted))
        #expect(f.sim.tenant.driveFiles(upn: upn) != before)

        let written = f.sim.stats.filesCommitted
        let plan = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.onlyChanged = true; $0.dryRun = true }
        #expect(plan.replaced == encrypted && plan.created == 1 && plan.unchanged == before.count - encrypted - 1)
        #expect(f.sim.stats.filesCommitted == written, "a dry run writes nothing")

        let summary = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.onlyChanged = true }
        #expect(summary.failures.isEmpty)
        #expect(summary.replaced == encrypted)
        #expect(summary.created == 1)
        #expect(summary.unchanged == before.count - encrypted - 1)
        #expect(f.sim.stats.filesCommitted - written == encrypted + 1, "only the changed and the deleted files were written")
        #expect(f.sim.tenant.driveFiles(upn: upn) == before)

        // Backed up again, the drive equals the first snapshot's, file times included.
        let third = try await f.backup()
        let original = try Self.files(f, first.snapshotID, "/users/\(upn)/onedrive")
        let now = try Self.files(f, third.snapshotID, "/users/\(upn)/onedrive")
        #expect(Set(now.keys) == Set(original.keys))
        for (path, file) in original {
            #expect(now[path]?.bytes == file.bytes, "\(path)")
            #expect(now[path]?.mtimeNs == file.mtimeNs, "\(path) modified time")
        }

        // Run again: everything is equal, nothing is written.
        let again = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.onlyChanged = true }
        #expect(again.unchanged == before.count && again.created + again.replaced == 0)
        #expect(f.sim.stats.filesCommitted - written == encrypted + 1)
        await f.close()
    }

    @Test func intoANewFolderOfAnotherUserAndEachCollisionPolicy() async throws {
        let f = try await GraphFixture()
        let (alice, bob) = (f.sim.tenant.users[0].upn, f.sim.tenant.users[1].upn)
        let source = f.sim.tenant.driveFiles(upn: alice)
        let first = try await f.backup()

        let other = try await Self.restore(f, first.snapshotID, "/users/\(alice)/onedrive/Documents") { $0.toUser = bob; $0.folderName = "From Alice" }
        #expect(other.failures.isEmpty && other.created > 0)
        let bobs = f.sim.tenant.driveFiles(upn: bob)
        for (path, bytes) in source where path.hasPrefix("Documents/") {
            #expect(bobs["From Alice/" + path] == bytes, "\(path)")
        }
        #expect(f.sim.tenant.driveFiles(upn: alice) == source, "the source user is untouched")

        // In place over a ransomed drive: skip leaves the encrypted files, copy puts the
        // originals beside them, replace puts them back.
        let encrypted = f.sim.tenant.ransomware(upn: alice, share: 1)
        let ransomed = f.sim.tenant.driveFiles(upn: alice)
        let skip = try await Self.restore(f, first.snapshotID, "/users/\(alice)/onedrive") { $0.destination = .inPlace }
        #expect(skip.skipped == source.count && skip.created == 0)
        #expect(f.sim.tenant.driveFiles(upn: alice) == ransomed)

        let copy = try await Self.restore(f, first.snapshotID, "/users/\(alice)/onedrive") { $0.destination = .inPlace; $0.collisions = .copy }
        #expect(copy.copied == encrypted.encrypted)
        let copied = f.sim.tenant.driveFiles(upn: alice)
        #expect(copied.count == 2 * source.count)
        for (path, bytes) in source {
            let dot = path.lastIndex(of: ".") ?? path.endIndex
            #expect(copied[String(path[..<dot]) + " 1" + String(path[dot...])] == bytes, "copy of \(path)")
            #expect(copied[path] == ransomed[path])
        }

        let replace = try await Self.restore(f, first.snapshotID, "/users/\(alice)/onedrive") { $0.destination = .inPlace; $0.collisions = .replace }
        #expect(replace.replaced == source.count)
        let replaced = f.sim.tenant.driveFiles(upn: alice)
        for (path, bytes) in source { #expect(replaced[path] == bytes) }
        await f.close()
    }

    @Test func anUploadURLWhoseTokenLapsesGetsANewSession() async throws {
        var spec = GraphFixture.smallSpec
        spec.minFileSize = 1_400_000  // five fragments of 320 KiB
        spec.maxFileSize = 1_600_000
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let source = f.sim.tenant.driveFiles(upn: upn)
        let first = try await f.backup()
        f.sim.faults.withLock { $0.uploadTokenExpiresAfterFragments = 2 }
        let summary = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.folderName = "Lapsed" }
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        #expect(summary.created == source.count)
        // Every file of more than two fragments (some are real files of other sizes) lapsed once.
        let long = source.values.filter { $0.count > 2 * 327_680 }.count
        #expect(long >= 3)
        #expect(f.sim.stats.expiredUploadTokens == long)
        #expect(f.sim.stats.uploadSessions == source.count + long)
        let restored = f.sim.tenant.driveFiles(upn: upn)
        for (path, bytes) in source { #expect(restored["Lapsed/" + path] == bytes, "\(path)") }
        await f.close()
    }

    @Test func aFullDriveEndsTheJobWithOneClearErrorAndTheSameCommandGoesOn() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let source = f.sim.tenant.driveFiles(upn: upn)
        let used = source.values.reduce(Int64(0)) { $0 + Int64($1.count) }
        let first = try await f.backup()
        // Room for about half of a second copy.
        f.sim.faults.withLock { $0.driveQuotaBytes = used + used / 2 }
        let options: (inout M365Restore.Options) -> Void = { $0.folderName = "Second copy"; $0.job = "full-drive"; $0.filesAtOnce = 1 }
        do {
            _ = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive", options)
            Issue.record("a full drive did not end the job")
        } catch let error as VaultlineError {
            #expect(error.code == .noSpace)
            #expect(error.message.contains("is full (507 quotaLimitReached)"), "\(error.message)")
        }
        #expect(f.sim.stats.quotaRefusals == 1, "the job stopped at the first refusal")
        let partly = f.sim.tenant.driveFiles(upn: upn).keys.filter { $0.hasPrefix("Second copy/") }.count
        #expect(partly > 0 && partly < source.count)
        // Space freed: the same command puts back the rest, nothing twice.
        f.sim.faults.withLock { $0.driveQuotaBytes = 0 }
        let rest = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive", options)
        #expect(rest.failures.isEmpty && rest.created == source.count - partly && rest.unchanged == partly)
        let restored = f.sim.tenant.driveFiles(upn: upn)
        #expect(restored.count == 2 * source.count)
        for (path, bytes) in source { #expect(restored["Second copy/" + path] == bytes, "\(path)") }
        await f.close()
    }

    @Test func failedFragmentsAndALostCommitAnswerNeitherLoseNorDuplicate() async throws {
        var spec = GraphFixture.smallSpec
        spec.maxFileSize = 2_000_000
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let source = f.sim.tenant.driveFiles(upn: upn)
        let first = try await f.backup()
        let lost = try #require(source.keys.sorted().first).split(separator: "/").last.map(String.init)
        f.sim.faults.withLock {
            $0.failUploadFragmentsEvery = 3
            $0.failAfterCommit = [lost ?? ""]
        }
        let summary = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.folderName = "R" }
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        let restored = f.sim.tenant.driveFiles(upn: upn).filter { $0.key.hasPrefix("R/") }
        #expect(restored.count == source.count, "no file twice, none missing")
        #expect(f.sim.stats.filesCommitted == source.count, "the file whose answer was lost was not uploaded twice")
        #expect(f.sim.stats.fragments > source.count + source.count / 3, "fragments failed and were sent again")
        for (path, bytes) in source { #expect(restored["R/" + path] == bytes, "\(path)") }
        await f.close()
    }

    @Test func aLibraryComesBackIntoItsSite() async throws {
        let f = try await GraphFixture()
        let first = try await f.backup()
        let library = try #require(f.sim.tenant.libraries.first)
        let source = f.sim.tenant.driveFiles(driveId: library.driveId)
        let summary = try await Self.restore(f, first.snapshotID, "/sites/\(library.site)/\(library.library)") { $0.folderName = "Back" }
        #expect(summary.failures.isEmpty && summary.created == source.count)
        let restored = f.sim.tenant.driveFiles(driveId: library.driveId).filter { $0.key.hasPrefix("Back/") }
        #expect(restored.count == source.count)
        for (path, bytes) in source { #expect(restored["Back/" + path] == bytes, "\(path)") }
        await f.close()
    }

    @Test func aTenantThatRefusesFileTimesInTheSessionGetsThemByPatch() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        f.sim.faults.withLock { $0.refuseFileSystemInfo = true }
        let summary = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive/Documents") { $0.folderName = "T" }
        #expect(summary.failures.isEmpty && summary.created > 0)
        let second = try await f.backup()
        let original = try Self.files(f, first.snapshotID, "/users/\(upn)/onedrive/Documents")
        let restored = try Self.files(f, second.snapshotID, "/users/\(upn)/onedrive/T/Documents")
        for (path, file) in original {
            #expect(restored[path]?.bytes == file.bytes)
            #expect(restored[path]?.mtimeNs == file.mtimeNs, "\(path)")
        }
        await f.close()
    }

    @Test func aMissingWritePermissionIsOneClearError() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        f.sim.faults.withLock { $0.drivesReadOnly = true }
        let writes = f.sim.stats.writes
        do {
            _ = try await Self.restore(f, first.snapshotID, "/users/\(upn)/onedrive")
            Issue.record("a restore without write permission succeeded")
        } catch let error as VaultlineError {
            #expect(error.code == .invalidArgument)
            #expect("\(error)".contains("Files.ReadWrite.All"))
        }
        #expect(f.sim.stats.writes == writes, "refused before any write was counted")
        await f.close()
    }

    @Test func eventsContactsAndWholeUsersAreRefusedNotSkipped() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        for path in ["/users/\(upn)", "/users/\(upn)/tasks", "/"] {
            await expectError(VaultlineError.self, .unsupported, "\(path)") { try await Self.restore(f, first.snapshotID, path) }
        }
        await f.close()
    }
}

@Suite("Restore into Microsoft 365: killed jobs")
struct KilledRestoreTests {
    /// `vaultline m365 restore` against the simulator, as a process: its status, or nil when it
    /// was killed once its journal held `killAfter` records (a point in the job, whatever the
    /// machine's speed).
    static func restore(_ f: GraphFixture, folder: String, killAfter: Int?, service: String = "onedrive") async throws -> Int32? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        p.arguments = ["m365", "restore", "latest:/users/\(f.sim.tenant.users[0].upn)/\(service)", "--repo", f.dir.path + "/repo",
                       "--graph-url", f.sim.graphURL, "--authority", f.sim.authorityURL, "--tenant", f.sim.tenantId,
                       "--client-id", f.sim.clientId, "--client-secret-file", f.dir.path + "/secret",
                       "--folder-name", folder, "--fragment-size-kib", "320", "--files-at-once", "3"]
        p.environment = ["VAULTLINE_PASSWORD": String(decoding: Fixtures.password, as: UTF8.self), "XDG_CACHE_HOME": f.dir.path + "/cache"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        if let killAfter {
            let journals = f.dir.path + "/cache/vaultline/\(f.repo.config.id)/restore"
            while p.isRunning {
                let records = ((try? FileSystem.list(journals)) ?? []).filter { $0.hasSuffix(".journal") }.reduce(0) { n, name in
                    n + ((try? FileSystem.readFile(journals + "/" + name)) ?? []).filter { $0 == 10 }.count
                }
                if records >= killAfter {
                    kill(p.processIdentifier, SIGKILL)
                    p.waitUntilExit()
                    return nil
                }
                try await Task.sleep(nanoseconds: 2_000_000)
            }
        }
        while p.isRunning { try await Task.sleep(nanoseconds: 10_000_000) }
        return p.terminationStatus
    }

    @Test(.timeLimit(.minutes(3)))
    func tenKillsAtRandomPointsLeaveNoDuplicateAndNothingMissing() async throws {
        var spec = GraphFixture.smallSpec
        spec.users = 1
        spec.messagesPerUser = 4
        spec.filesPerUser = 16
        spec.maxFileSize = 900_000
        let f = try await GraphFixture(spec: spec)
        try Fixtures.writeFile(f.dir.path + "/secret", Array("test-secret".utf8))
        let upn = f.sim.tenant.users[0].upn
        let source = f.sim.tenant.driveFiles(upn: upn)
        _ = try await f.backup()
        f.sim.faults.withLock {
            $0.latency = 0.01
            // An upload session left behind by a kill between its creation and its journal
            // record holds its path until it expires; short here, so that a trial that hits that
            // window finishes on its next run.
            $0.uploadSessionLifetime = 2
        }
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        var killed = 0
        for trial in 0..<10 {
            let folder = "Trial \(trial)"
            let committed = f.sim.stats.filesCommitted
            // The journal holds about four records a file (upload, session, done) plus folders.
            let point = 2 + Int(rng.next() % UInt64(3 * source.count))
            if try await Self.restore(f, folder: folder, killAfter: point) == nil { killed += 1 }
            var status = try await Self.restore(f, folder: folder, killAfter: nil)
            if status == 3 {
                try await Task.sleep(nanoseconds: 2_500_000_000)
                status = try await Self.restore(f, folder: folder, killAfter: nil)
            }
            #expect(status == 0, "trial \(trial): the resumed job did not finish")
            let restored = f.sim.tenant.driveFiles(upn: upn).filter { $0.key.hasPrefix(folder + "/") }
            #expect(restored.count == source.count, "trial \(trial): \(restored.count) files for \(source.count)")
            for (path, bytes) in source { #expect(restored[folder + "/" + path] == bytes, "trial \(trial): \(path)") }
            #expect(f.sim.stats.filesCommitted - committed == source.count, "trial \(trial): a file was committed twice")
        }
        #expect(killed >= 8, "only \(killed) of 10 jobs were still running when killed")
        await f.close()
    }

    @Test(.timeLimit(.minutes(3)))
    func tenKilledMailRestoresLeaveEveryMessageOnce() async throws {
        var spec = GraphFixture.smallSpec
        spec.users = 1
        spec.messagesPerUser = 30
        spec.attachmentShare = 0.5
        spec.filesPerUser = 1
        let f = try await GraphFixture(spec: spec)
        try Fixtures.writeFile(f.dir.path + "/secret", Array("test-secret".utf8))
        let upn = f.sim.tenant.users[0].upn
        let source = f.sim.tenant.mailbox(upn: upn)
        _ = try await f.backup()
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        var killed = 0
        for trial in 0..<10 {
            let folder = "Mail trial \(trial)"
            let point = 2 + Int(rng.next() % UInt64(2 * source.count))
            if try await Self.restore(f, folder: folder, killAfter: point, service: "mail") == nil { killed += 1 }
            let status = try await Self.restore(f, folder: folder, killAfter: nil, service: "mail")
            #expect(status == 0, "trial \(trial): the resumed job did not finish")
            let restored = f.sim.tenant.mailbox(upn: upn).filter { $0.folderPath.hasPrefix(folder + "/") }
            #expect(restored.count == source.count, "trial \(trial): \(restored.count) messages for \(source.count)")
            // Each source message once, in its folder (below the trial's folder).
            var expected: [String: Int] = [:]
            for m in source { expected[m.folderPath, default: 0] += 1 }
            var got: [String: Int] = [:]
            for m in restored { got[String(m.folderPath.dropFirst(folder.count + 1)), default: 0] += 1 }
            #expect(got == expected, "trial \(trial)")
        }
        #expect(killed >= 8, "only \(killed) of 10 jobs were still running when killed")
        await f.close()
    }
}

@Suite("Restore into Microsoft 365: mail")
struct MailRestoreTests {
    /// Each message of a snapshot's mail folder: its MIME read as Graph will get it, and the
    /// Graph JSON backed up with it.
    static func messages(_ f: GraphFixture, _ snapshot: String, _ path: String) throws -> [(built: GraphMessageBuilder, item: JSONValue)] {
        try f.repo.loadIndex()
        let tree = try Restorer(repository: f.repo).folderTree(snapshotID: snapshot, path: path)
        return try f.repo.loadTree(tree).nodes.filter { $0.kind == .file }.map { node in
            let item = try JSONValue.parse(Array((node.metadata?["graph.item"] ?? "{}").utf8))
            return (GraphMessageBuilder(mime: try f.repo.readContent(of: node), item: item, restoreKey: nil), item)
        }
    }

    @Test func anEmptiedFolderComesBackNotAsDraftsWithItsDatesAndNothingElseIsWritten() async throws {
        var spec = GraphFixture.smallSpec
        spec.attachmentShare = 0.5
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        let total = f.sim.tenant.mailbox(upn: upn).count
        let original = try Self.messages(f, first.snapshotID, "/users/\(upn)/mail/Inbox")
        let emptied = f.sim.tenant.emptyFolder(upn: upn, displayName: "Inbox")
        #expect(emptied == original.count && emptied > 3)

        let created = f.sim.stats.messagesCreated
        // The plan first: it compares with the mailbox and writes nothing.
        let writes = f.sim.stats.writes
        let plan = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.onlyChanged = true; $0.dryRun = true }
        #expect(plan.dryRun && plan.created == emptied && plan.unchanged == total - emptied)
        let skipPlan = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.dryRun = true; $0.destination = .inPlace }
        #expect(skipPlan.created == emptied && skipPlan.skipped == total - emptied)
        let newFolderPlan = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.dryRun = true }
        #expect(newFolderPlan.created == total, "a new folder does not exist yet")
        #expect(f.sim.stats.writes == writes)
        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.onlyChanged = true }
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        #expect(summary.created == emptied)
        #expect(summary.unchanged == total - emptied)
        #expect(f.sim.stats.messagesCreated - created == emptied, "only the missing messages were written")

        let second = try await f.backup()
        let back = try Self.messages(f, second.snapshotID, "/users/\(upn)/mail/Inbox")
        #expect(back.count == original.count)
        for (built, item) in original {
            let imid = built.message["internetMessageId"]?.string
            guard let (again, againItem) = back.first(where: { $0.built.message["internetMessageId"]?.string == imid }) else {
                Issue.record("\(imid ?? "?") did not come back")
                continue
            }
            for field in ["subject", "from", "toRecipients", "ccRecipients"] {
                #expect(again.message[field] == built.message[field], "\(field) of \(imid ?? "")")
            }
            #expect(again.message["body"]?["content"]?.string?.trimmingCharacters(in: .whitespacesAndNewlines)
                    == built.message["body"]?["content"]?.string?.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(again.attachments.map { [$0.name, SHA256.hash($0.bytes).hex] } == built.attachments.map { [$0.name, SHA256.hash($0.bytes).hex] })
            #expect(againItem["isDraft"]?.bool == false, "restored as a draft")
            #expect(againItem["isRead"]?.bool == item["isRead"]?.bool)
            #expect(againItem["receivedDateTime"]?.string == item["receivedDateTime"]?.string, "received time")
            #expect(againItem["sentDateTime"]?.string == item["sentDateTime"]?.string, "sent time (the simulator's Date header is 5 s off it)")
        }

        // The same command again: everything is there, nothing is written.
        let again = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.onlyChanged = true }
        #expect(again.created == 0 && again.unchanged == total)
        #expect(f.sim.stats.messagesCreated - created == emptied)
        await f.close()
    }

    @Test func aMessageCreatedWhoseAnswerWasA500IsFoundByItsKeyNotPostedAgain() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        let count = f.sim.tenant.mailbox(upn: upn).count
        f.sim.faults.withLock { $0.failAfterCreatingEvery = 3 }
        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.folderName = "Ambiguous" }
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        #expect(f.sim.stats.messagesCreated == count, "every third answer was a 500, and none was posted twice")
        #expect(f.sim.tenant.mailbox(upn: upn).filter { $0.folderPath.hasPrefix("Ambiguous/") }.count == count)
        await f.close()
    }

    @Test func aDraftComesBackAsADraftFromItsMIME() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        // A draft in the tenant, made as Outlook would: in a Drafts folder, from JSON without flags.
        let token = try await f.client.json(f.client.url("users", upn, "mailFolders"))  // signs in; lists the folders
        #expect(token["value"]?.array?.isEmpty == false)
        let drafts = try #require(try await f.client.write(.POST, f.client.url("users", upn, "mailFolders"), json: .object(["displayName": .string("Drafts")]),
                                                          mailbox: upn, idempotent: false).json?["id"]?.string)
        let draft: JSONValue = .object(["subject": .string("Unfinished reply"), "body": .object(["contentType": .string("text"), "content": .string("half a thought")]),
                                        "toRecipients": .array([.object(["emailAddress": .object(["address": .string("megan@contoso.example")])])])])
        _ = try await f.client.write(.POST, f.client.url("users", upn, "mailFolders", drafts, "messages"), json: draft, mailbox: upn, idempotent: false)
        let first = try await f.backup()
        let before = try MailRestoreTests.messages(f, first.snapshotID, "/users/\(upn)/mail/Drafts")
        #expect(before.count == 1 && before[0].item["isDraft"]?.bool == true)

        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail/Drafts") { $0.folderName = "R" }
        #expect(summary.failures.isEmpty && summary.created == 1)
        let second = try await f.backup()
        let back = try MailRestoreTests.messages(f, second.snapshotID, "/users/\(upn)/mail/R/Drafts")
        #expect(back.count == 1)
        #expect(back.first?.item["isDraft"]?.bool == true, "a draft stays a draft")
        #expect(back.first?.built.message["subject"] == before[0].built.message["subject"])
        #expect(back.first?.built.message["body"] == before[0].built.message["body"])

        // The window between the draft's POST and the PATCH that gives it its key: the PATCH
        // fails (as a kill there would leave it), the job fails the draft; run again, it finds
        // the draft it posted and does not post another.
        f.sim.faults.withLock { $0.failMessagePatches = true }
        let cut = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail/Drafts") { $0.folderName = "Cut"; $0.job = "draft-window" }
        #expect(cut.failed == 1)
        f.sim.faults.withLock { $0.failMessagePatches = false }
        let again = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail/Drafts") { $0.folderName = "Cut"; $0.job = "draft-window" }
        #expect(again.failures.isEmpty && again.created == 1)
        let third = try await f.backup()
        #expect(try MailRestoreTests.messages(f, third.snapshotID, "/users/\(upn)/mail/Cut/Drafts").count == 1, "one draft, not two")
        await f.close()
    }

    @Test func aLargeAttachmentGoesThroughAnUploadSession() async throws {
        var spec = GraphFixture.smallSpec
        spec.users = 1
        spec.largeAttachmentSize = 4_500_000
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        let original = try MailRestoreTests.messages(f, first.snapshotID, "/users/\(upn)/mail/Inbox")
        let large = try #require(original.first { $0.built.attachments.contains { $0.bytes.count == 4_500_000 } })
        let fragments = f.sim.stats.fragments
        f.sim.faults.withLock { $0.attachmentNotFoundFirst = true }
        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail/Inbox") { $0.folderName = "Large" }
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        #expect(f.sim.stats.fragments - fragments == 2, "4.5 MB in chunks of 3 MiB")
        #expect(f.sim.stats.transientNotFound == 1, "the first attachment POST found no message, and was tried again")
        let second = try await f.backup()
        let back = try MailRestoreTests.messages(f, second.snapshotID, "/users/\(upn)/mail/Large/Inbox")
        let again = try #require(back.first { $0.built.message["internetMessageId"] == large.built.message["internetMessageId"] })
        #expect(again.built.attachments.map { SHA256.hash($0.bytes).hex } == large.built.attachments.map { SHA256.hash($0.bytes).hex })
        await f.close()
    }

    @Test func intoANewFolderOfAnotherMailboxAndAMissingPermission() async throws {
        let f = try await GraphFixture()
        let (alice, bob) = (f.sim.tenant.users[0].upn, f.sim.tenant.users[1].upn)
        let first = try await f.backup()
        let before = f.sim.tenant.mailbox(upn: bob).count
        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(alice)/mail/Inbox") { $0.toUser = bob; $0.folderName = "Alice" }
        #expect(summary.failures.isEmpty && summary.created > 0)
        let bobs = f.sim.tenant.mailbox(upn: bob)
        #expect(bobs.count == before + summary.created)
        #expect(bobs.filter { $0.folderPath.hasPrefix("Alice/Inbox") }.count == summary.created, "the folder and its subfolders")
        // Run again: found by their restore keys or ids, not posted twice.
        let again = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(alice)/mail/Inbox") { $0.toUser = bob; $0.folderName = "Alice"; $0.collisions = .skip }
        #expect(again.created == 0)
        #expect(f.sim.tenant.mailbox(upn: bob).count == before + summary.created)

        f.sim.faults.withLock { $0.mailboxesReadOnly = true }
        do {
            _ = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(alice)/mail/Inbox") { $0.folderName = "Denied" }
            Issue.record("a restore without Mail.ReadWrite succeeded")
        } catch let error as VaultlineError {
            #expect("\(error)".contains("Mail.ReadWrite"))
        }
        await f.close()
    }

    /// In place over an Inbox that holds every message: skip leaves it, copy puts a second of
    /// each beside it, replace makes each anew and deletes the one there; events and contacts
    /// the same by their collision keys.
    @Test func eachCollisionPolicyForMailEventsAndContacts() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        let inbox = { f.sim.tenant.mailbox(upn: upn).filter { $0.folderPath == "Inbox" || $0.folderPath.hasPrefix("Inbox/") } }  // and its subfolders
        let messages = inbox().count
        let events = f.sim.tenant.jsonItems(upn: upn, events: true).count
        let contacts = f.sim.tenant.jsonItems(upn: upn, events: false).count
        #expect(messages > 3 && events > 1 && contacts > 1)
        let paths = ["/users/\(upn)/mail/Inbox", "/users/\(upn)/calendar", "/users/\(upn)/contacts/Contacts"]
        func counts() -> [Int] {
            [inbox().count, f.sim.tenant.jsonItems(upn: upn, events: true).count, f.sim.tenant.jsonItems(upn: upn, events: false).count]
        }
        func run(_ policy: M365Restore.Options.Collisions) async throws -> [M365Restore.Summary] {
            var out: [M365Restore.Summary] = []
            for (i, path) in paths.enumerated() {
                out.append(try await DriveRestoreTests.restore(f, first.snapshotID, path) { $0.destination = .inPlace; $0.collisions = policy; $0.job = "\(policy)-\(i)" })
            }
            return out
        }
        await expectError(VaultlineError.self, .invalidArgument, "a job name that leaves the journal directory") {
            try await DriveRestoreTests.restore(f, first.snapshotID, paths[0]) { $0.job = "../../escape" }
        }
        let skip = try await run(.skip)
        #expect(skip.map(\.skipped) == [messages, events, contacts])
        #expect(skip.map(\.created) == [0, 0, 0])
        #expect(counts() == [messages, events, contacts])

        let copy = try await run(.copy)
        #expect(copy.map(\.copied) == [messages, events, contacts])
        #expect(copy.flatMap(\.failures).isEmpty)
        #expect(counts() == [2 * messages, 2 * events, 2 * contacts])

        let created = (f.sim.stats.messagesCreated, f.sim.stats.eventsCreated, f.sim.stats.contactsCreated)
        let replace = try await run(.replace)
        #expect(replace.flatMap(\.failures).isEmpty, "\(replace.flatMap(\.failures))")
        #expect(replace.map(\.replaced) == [messages, events, contacts])
        #expect(counts() == [2 * messages, 2 * events, 2 * contacts], "each made anew, the one there deleted")
        #expect(f.sim.stats.messagesCreated - created.0 == messages && f.sim.stats.eventsCreated - created.1 == events
                && f.sim.stats.contactsCreated - created.2 == contacts)
        await f.close()
    }
}

/// Timing-sensitive: run by tools/test.sh in its quiet second pass.
@Suite("Restore into Microsoft 365: the upload budget")
struct UploadBudgetTests {
    @Test(.timeLimit(.minutes(2)))
    func sharePointResourceUnitsAreWaitedOutNotFailed() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let source = f.sim.tenant.driveFiles(upn: upn)
        let first = try await f.backup()
        let before = f.sim.stats.driveResourceUnits
        _ = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.folderName = "Measure" }
        let cost = f.sim.stats.driveResourceUnits - before
        // A budget a sixth short of what the restore spends: it must wait about 12 s, and finish.
        let perMinute = max(6, cost * 5 / 6)
        f.sim.faults.withLock { $0.driveResourceUnitsPerMinute = perMinute }
        let started = Date()
        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/onedrive") { $0.folderName = "Budget" }
        let seconds = Date().timeIntervalSince(started)
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        #expect(summary.created == source.count)
        #expect(f.sim.stats.driveThrottled > 0, "the budget was reached (429) and waited out")
        // Spending `cost` units at `perMinute` after a full bucket takes (cost - perMinute) / rate.
        let floor = Double(cost - perMinute) / (Double(perMinute) / 60)
        #expect(seconds >= floor * 0.8, "\(seconds) s against a floor of \(floor) s (\(cost) units at \(perMinute) a minute)")
        let restored = f.sim.tenant.driveFiles(upn: upn)
        for (path, bytes) in source { #expect(restored["Budget/" + path] == bytes) }
        await f.close()
    }

    @Test func theUploadBudgetIsWaitedOutNotFailed() async throws {
        var spec = GraphFixture.smallSpec
        spec.attachmentShare = 0
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        let mailbox = f.sim.tenant.mailbox(upn: upn)
        // Exchange's 150 MB per 5 minutes, scaled down: a bucket just above the largest request
        // (a message's JSON is about its MIME's size), refilled in 0.2 s. The four posts that
        // start together cannot all fit.
        let largest = mailbox.map(\.mime.count).max() ?? 0
        f.sim.faults.withLock {
            $0.mailboxUploadBytesPer5Minutes = 2 * largest + 4096
            $0.mailboxUploadWindow = 0.2
        }
        let summary = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/mail") { $0.folderName = "Budget" }
        #expect(summary.failures.isEmpty, "\(summary.failures)")
        #expect(summary.created == mailbox.count)
        #expect(summary.throttled > 0, "the budget was reached (429 IncomingBytes) and waited out")
        #expect(f.sim.tenant.mailbox(upn: upn).filter { $0.folderPath.hasPrefix("Budget/") }.count == mailbox.count)
        await f.close()
    }
}

@Suite("Restore into Microsoft 365: events and contacts")
struct EventContactRestoreTests {
    /// A stored event or contact's fields that a restore must give back (Graph's own ids and
    /// times of change aside).
    static func fields(_ json: JSONValue, events: Bool) -> [String: JSONValue] {
        var o = json.object ?? [:]
        for f in events ? M365Restore.readOnlyEventFields : M365Restore.readOnlyContactFields { o[f] = nil }
        o["attendees"] = nil
        o["body"] = nil
        o["singleValueExtendedProperties"] = nil
        return o
    }

    static func items(_ f: GraphFixture, _ snapshot: String, _ path: String) throws -> [JSONValue] {
        try f.repo.loadIndex()
        let tree = try Restorer(repository: f.repo).folderTree(snapshotID: snapshot, path: path)
        return try f.repo.loadTree(tree).nodes.filter { $0.kind == .file }.map { try JSONValue.parse(try f.repo.readContent(of: $0)) }
    }

    @Test func deletedEventsAndContactsComeBackWithoutInvitingAnyone() async throws {
        let f = try await GraphFixture()
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()
        let events = f.sim.tenant.jsonItems(upn: upn, events: true)
        let contacts = f.sim.tenant.jsonItems(upn: upn, events: false)
        let goneEvents = Array(events.keys.sorted().prefix(2)), goneContacts = Array(contacts.keys.sorted().prefix(2))
        for id in goneEvents { #expect(f.sim.tenant.deleteEvent(upn: upn, id: id)) }
        for id in goneContacts { #expect(f.sim.tenant.deleteContact(upn: upn, id: id)) }

        let e = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/calendar") { $0.onlyChanged = true }
        #expect(e.failures.isEmpty && e.created == goneEvents.count && e.unchanged == events.count - goneEvents.count)
        let c = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/contacts") { $0.onlyChanged = true }
        #expect(c.failures.isEmpty && c.created == goneContacts.count && c.unchanged == contacts.count - goneContacts.count)
        #expect(f.sim.stats.invitationsSent == 0, "no attendee was invited")
        #expect(f.sim.stats.eventsCreated == goneEvents.count && f.sim.stats.contactsCreated == goneContacts.count, "nothing untouched was written")

        let second = try await f.backup()
        for (path, isEvents) in [("/users/\(upn)/calendar", true), ("/users/\(upn)/contacts/Contacts", false)] {
            let before = try Self.items(f, first.snapshotID, path).map { Self.fields($0, events: isEvents) }
            let after = try Self.items(f, second.snapshotID, path).map { Self.fields($0, events: isEvents) }
            #expect(after.count == before.count, "\(path)")
            for item in before { #expect(after.contains(item), "\(path): \(item["subject"]?.string ?? item["displayName"]?.string ?? "")") }
        }
        // An event with attendees names them in its body instead.
        let restored = try Self.items(f, second.snapshotID, "/users/\(upn)/calendar")
        let original = try Self.items(f, first.snapshotID, "/users/\(upn)/calendar")
        for event in original where goneEvents.contains(event["id"]?.string ?? "") && !(event["attendees"]?.array ?? []).isEmpty {
            let back = try #require(restored.first { $0["subject"] == event["subject"] && $0["start"] == event["start"] })
            let content = back["body"]?["content"]?.string ?? ""
            #expect(content.hasPrefix("Attendees (not invited by the restore):"))
            let attendees = back["attendees"]?.array ?? []
            #expect(attendees.isEmpty)
        }

        // --invite-attendees, into a new calendar: the attendees are invited.
        let invited = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/calendar") { $0.inviteAttendees = true; $0.folderName = "Rebuilt" }
        #expect(invited.created == events.count)
        let expected = original.reduce(0) { $0 + ($1["attendees"]?.array?.count ?? 0) }
        #expect(f.sim.stats.invitationsSent == expected && expected > 0)
        await f.close()
    }

    @Test func deletedSeriesComeBackWithTheirExceptionsAndCancellations() async throws {
        var spec = GraphFixture.smallSpec
        spec.seriesEvery = 2
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let other = try #require(f.sim.tenant.otherCalendars(upn: upn).first)
        let shapes = f.sim.tenant.seriesShapes(upn: upn), otherShapes = f.sim.tenant.seriesShapes(upn: upn, calendar: other.id)
        #expect(shapes.count == 2 && otherShapes.count == 1)
        for lines in Array(shapes.values) + Array(otherShapes.values) {
            #expect(lines.count == 5 && lines.filter { $0.hasPrefix("exception ") }.count == 1, "six occurrences, one moved, one cancelled")
        }
        let first = try await f.backup()
        // Every series goes, and one single event.
        let gone = f.sim.tenant.jsonItems(upn: upn, events: true).filter { $0.value.range(of: Data("seriesMaster".utf8)) != nil }.map(\.key)
            + f.sim.tenant.jsonItems(upn: upn, events: true, calendar: other.id).filter { $0.value.range(of: Data("seriesMaster".utf8)) != nil }.map(\.key)
        #expect(gone.count == 3)
        for id in gone { #expect(f.sim.tenant.deleteEvent(upn: upn, id: id)) }
        #expect(f.sim.tenant.seriesShapes(upn: upn).isEmpty)

        // The plan, then the restore: only the series are created.
        let plan = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/calendar") { $0.onlyChanged = true; $0.dryRun = true }
        #expect(plan.created == 2 && plan.unchanged == spec.eventsPerUser - 2 && f.sim.stats.eventsCreated == 0, "a dry run writes nothing")
        let e = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/calendar") { $0.onlyChanged = true }
        #expect(e.failures.isEmpty && e.created == 2 && e.unchanged == spec.eventsPerUser - 2)
        let o = try await DriveRestoreTests.restore(f, first.snapshotID, "/users/\(upn)/calendars") { $0.onlyChanged = true }
        #expect(o.failures.isEmpty && o.created == 1 && o.unchanged == spec.eventsPerOtherCalendar - 1)
        #expect(f.sim.stats.eventsCreated == 3, "one POST per series, not one per occurrence")
        #expect(f.sim.tenant.seriesShapes(upn: upn) == shapes)
        #expect(f.sim.tenant.seriesShapes(upn: upn, calendar: other.id) == otherShapes)
        #expect(f.sim.stats.invitationsSent == 0)

        // Backed up again, the calendar holds what it held.
        let second = try await f.backup()
        let before = try EventContactRestoreTests.items(f, first.snapshotID, "/users/\(upn)/calendar").map { Self.fields($0, events: true) }
        let after = try EventContactRestoreTests.items(f, second.snapshotID, "/users/\(upn)/calendar").map { Self.fields($0, events: true) }
        #expect(after.count == before.count)
        for item in before { #expect(after.contains(item), "\(item["subject"]?.string ?? "an occurrence at \(item["start"]?["dateTime"]?.string ?? "")")") }
        await f.close()
    }
}
