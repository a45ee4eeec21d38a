import Foundation

/// `vaultline scrub`: re-reads the repository's files at a bounded byte rate, resuming where
/// the last run stopped, so that every byte is re-read once per period.
///
/// Files are visited in a fixed order (keys, packs, index files, snapshots; by name within a
/// kind) and the cursor — the last file verified — is saved after every batch, so a run that
/// is stopped, killed or limited by `maxSeconds` loses at most one batch of work. When the
/// cursor reaches the end, the pass is complete and the next run starts a new one.
///
/// Depths: keyless (SHA-256 of every file equals its name; needs no password, so site B's
/// receiver host can run it) and deep (also every pack blob authenticated, decompressed and
/// re-identified, every index and snapshot file authenticated — ``PackVerifier``).
public final class Scrubber {
    public enum Depth: String, Codable, Sendable { case keyless, deep }

    public struct Options: Sendable {
        public var depth = Depth.keyless
        public var bytesPerSecond: Double?
        /// Stop after this long (the cursor is kept); nil runs to the end of the pass.
        public var maxSeconds: Double?
        /// A whole pass should take no longer than this; the report warns when it does.
        public var period: TimeInterval = 30 * 86400
        /// Read only what keeps the pass on schedule: by `period × f` after the pass started,
        /// a share `f` of the bytes has been read. A timer running often then spreads one pass
        /// evenly over the period, and a missed run is caught up by the next.
        public var paced = false
        public var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        /// Asked before each batch (about a second of work when rate-limited, at most 256 MiB):
        /// true stops the run there, the cursor kept — `m365 serve` yields to its backups.
        public var shouldStop: (@Sendable () -> Bool)?
        /// Where the cursor lives (``Scrubber/defaultStatePath(repositoryID:depth:)``).
        public var statePath: String
        public init(statePath: String) { self.statePath = statePath }
    }

    /// Persisted between runs.
    public struct State: Codable, Sendable, Equatable {
        public var passStarted: Date
        /// `kind/name` of the last file verified in this pass; nil at the start of a pass.
        public var cursor: String?
        public var bytesThisPass: UInt64 = 0
        public var damagedThisPass: [String] = []
        public var lastCompletedPass: Date?
        public var lastPassSeconds: Double?
    }

    public struct Damage: Codable, Sendable, Equatable {
        /// `packs/<name>`, `index/<name>`, …
        public var file: String
        public var problem: String
    }

    public struct Report: Codable, Sendable {
        public var depth: Depth
        public var filesRead = 0
        public var bytesRead: UInt64 = 0
        public var seconds = 0.0
        public var bytesPerSecond = 0.0
        public var damaged: [Damage] = []
        /// Files in the repository and how far this pass has come through them.
        public var filesTotal = 0
        public var bytesTotal: UInt64 = 0
        public var passFraction = 0.0
        public var passCompleted = false
        public var cursor: String?
        public var lastCompletedPass: Date?
        /// Set when a whole pass at the configured rate would take longer than the period.
        public var warning: String?
        public var ok: Bool { damaged.isEmpty }
    }

    let backend: any Backend
    let key: MasterKey?
    let options: Options

    /// Keyless scrub needs only the backend; deep scrub needs the opened repository's key.
    public init(backend: any Backend, key: MasterKey?, options: Options) throws {
        if options.depth == .deep && key == nil {
            throw VaultlineError(.invalidArgument, "a deep scrub needs the repository password; a keyless scrub does not")
        }
        self.backend = backend
        self.key = key
        self.options = options
    }

    public static func defaultStatePath(repositoryID: String, depth: Depth) -> String {
        statePath(in: FileSystem.stateDirectory(), repositoryID: repositoryID, depth: depth)
    }

    /// The cursor's file in `directory`: one per repository and depth, shared by every scrubber
    /// on the machine (`vaultline scrub` and `m365 serve` continue one pass).
    public static func statePath(in directory: String, repositoryID: String, depth: Depth) -> String {
        directory + "/scrub-\(repositoryID.prefix(16))-\(depth.rawValue).json"
    }

    static let order: [FileKind] = [.key, .pack, .index, .snapshot]

    public func run() throws -> Report {
        let start = MonotonicClock.nanoseconds()
        var state = try loadState()
        var report = Report(depth: options.depth)
        // Every content-addressed file with its size, in visiting order.
        var files: [(ref: String, kind: FileKind, name: String, size: Int64)] = []
        for kind in Self.order {
            for name in try backend.list(kind).sorted() {
                files.append(("\(kind.rawValue)/\(name)", kind, name, try backend.stat(kind, name) ?? 0))
            }
        }
        report.filesTotal = files.count
        report.bytesTotal = files.reduce(0) { $0 + UInt64(max(0, $1.size)) }
        var position = 0
        if let cursor = state.cursor {
            position = files.firstIndex { Self.comesAfter($0.ref, cursor) } ?? files.count
        }
        let budget = options.bytesPerSecond.map { ByteRateBudget(bytesPerSecond: $0, startFull: false) }
        // About a second of work per batch when rate-limited: the cursor is saved and the time
        // limit looked at that often.
        // Paced, a batch is a 64th of the repository at most: the run stops close to schedule.
        var batchBytes = Int64(min(max(options.bytesPerSecond ?? .infinity, Double(4 << 20)), Double(256 << 20)))
        if options.paced { batchBytes = min(batchBytes, Int64(report.bytesTotal / 64)) }
        let backend = self.backend, key = self.key, depth = options.depth
        let readStart = MonotonicClock.nanoseconds()
        while position < files.count {
            if let max = options.maxSeconds, MonotonicClock.seconds(since: start) >= max { break }
            if options.shouldStop?() == true { break }
            if options.paced, report.filesRead > 0 {
                let due = Double(report.bytesTotal) * min(1, Date().timeIntervalSince(state.passStarted) / options.period)
                if Double(state.bytesThisPass) >= due { break }
            }
            var end = position, size: Int64 = 0
            while end < files.count && (end == position || size + files[end].size <= batchBytes) {
                size += files[end].size
                end += 1
            }
            let batch = Array(files[position..<end]).map { ($0.kind, $0.name) }
            let found = Locked<[Damage]>([])
            let read = Locked<(files: Int, bytes: UInt64)>((0, 0))
            ParallelWork.forEach(batch, workers: options.workers, makeState: { PackVerifier(key: depth == .deep ? key : nil) }) { verifier, item in
                let (kind, name) = item
                let ref = "\(kind.rawValue)/\(name)"
                do {
                    let bytes = try backend.read(kind, name)
                    budget?.take(bytes.count)
                    read.withLock { $0.files += 1; $0.bytes += UInt64(bytes.count) }
                    if let problem = Self.verify(kind: kind, name: name, bytes: bytes, verifier: verifier) {
                        found.withLock { $0.append(Damage(file: ref, problem: problem)) }
                    }
                } catch let e as VaultlineError where e.code == .notFound {
                    // Removed since listing (prune): nothing to verify.
                } catch {
                    found.withLock { $0.append(Damage(file: ref, problem: PackVerifier.message(error))) }
                }
            }
            let (n, bytes) = read.withLock { $0 }
            let damage = found.withLock { $0 }.sorted { $0.file < $1.file }
            report.filesRead += n
            report.bytesRead += bytes
            report.damaged += damage
            state.bytesThisPass += bytes
            state.damagedThisPass += damage.map(\.file)
            state.cursor = files[end - 1].ref
            position = end
            if position == files.count {
                state.lastPassSeconds = Date().timeIntervalSince(state.passStarted)
                state.lastCompletedPass = Date()
                report.passCompleted = true
            }
            try saveState(state)
        }
        // The rate is over the reading itself, not the listing before it.
        report.bytesPerSecond = Double(report.bytesRead) / max(MonotonicClock.seconds(since: readStart), 0.001)
        report.seconds = MonotonicClock.seconds(since: start)
        report.cursor = report.passCompleted ? nil : state.cursor
        report.passFraction = files.isEmpty ? 1 : Double(position) / Double(files.count)
        report.lastCompletedPass = state.lastCompletedPass
        if let rate = options.bytesPerSecond, Double(report.bytesTotal) / rate > options.period {
            let days = Double(report.bytesTotal) / rate / 86400
            report.warning = "at \(Int(rate)) bytes/s a whole pass takes \(String(format: "%.1f", days)) days, longer than the period of \(String(format: "%.1f", options.period / 86400)) days: raise --limit-rate or run more often"
        }
        if report.passCompleted {
            // The next run starts a new pass.
            var fresh = State(passStarted: Date())
            fresh.lastCompletedPass = state.lastCompletedPass
            fresh.lastPassSeconds = state.lastPassSeconds
            try saveState(fresh)
        }
        return report
    }

    /// Sort order of `kind/name` refs: by kind in visiting order, then by name.
    static func comesAfter(_ ref: String, _ cursor: String) -> Bool {
        func rank(_ r: String) -> (Int, Substring) {
            let parts = r.split(separator: "/", maxSplits: 1)
            let kind = order.firstIndex { $0.rawValue == parts.first.map(String.init) } ?? order.count
            return (kind, parts.count > 1 ? parts[1] : "")
        }
        return rank(ref) > rank(cursor)
    }

    static func verify(kind: FileKind, name: String, bytes: [UInt8], verifier: PackVerifier) -> String? {
        switch kind {
        case .pack:
            return verifier.verify(name: name, bytes: bytes).problem
        case .index, .snapshot:
            let digest = SHA256.hash(bytes).hex
            if digest != name { return "content does not match its name (SHA-256 is \(digest.prefix(16))…)" }
            guard let key = verifier.key else { return nil }
            do {
                _ = try SealedFile.open(bytes, kind: kind == .index ? .index : .snapshot, key: key, name: name, folder: kind.rawValue)
                return nil
            } catch {
                return PackVerifier.message(error)
            }
        default:
            let digest = SHA256.hash(bytes).hex
            return digest == name ? nil : "content does not match its name (SHA-256 is \(digest.prefix(16))…)"
        }
    }

    func loadState() throws -> State {
        guard FileSystem.exists(options.statePath) else { return State(passStarted: Date()) }
        do {
            return try StoredJSON.decode(State.self, from: try FileSystem.readFile(options.statePath), object: options.statePath)
        } catch {
            // A damaged cursor costs a restart of the pass, never a skipped file.
            return State(passStarted: Date())
        }
    }

    func saveState(_ state: State) throws {
        let dir = (options.statePath as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileSystem.makeDirectories(dir) }
        try FileSystem.replaceFile(options.statePath, with: try StoredJSON.encode(state))
    }
}
