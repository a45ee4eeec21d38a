import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineGraph
import VaultlineReplication
import VaultlineS3
#if canImport(Glibc)
import Glibc
#endif

/// Options shared by every command that opens a repository.
struct RepositoryOptions: ParsableArguments {
    @Option(name: [.customShort("r"), .long], help: "Repository: a directory, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] (or VAULTLINE_REPOSITORY).")
    var repo: String?

    @Option(help: "File holding the password (or VAULTLINE_PASSWORD_FILE / VAULTLINE_PASSWORD).")
    var passwordFile: String?

    @Flag(help: "Machine-readable JSON output.")
    var json = false

    @Flag(help: "On S3, keep no local copy of index files, snapshots and key slots (see VAULTLINE_CACHE_DIR).")
    var noCache = false

    var repositoryPath: String {
        get throws {
            if let repo { return repo }
            if let env = ProcessInfo.processInfo.environment["VAULTLINE_REPOSITORY"], !env.isEmpty { return env }
            throw VaultlineError(.invalidArgument, "no repository given: use --repo or set VAULTLINE_REPOSITORY")
        }
    }

    func password() throws -> [UInt8] {
        try Secrets.read(file: passwordFile, fileVariable: "VAULTLINE_PASSWORD_FILE", variable: "VAULTLINE_PASSWORD", prompt: "repository password: ")
    }

    /// The repository's directory, for the commands that work on a local repository only.
    var localRepositoryPath: String {
        get throws {
            let location = try repositoryPath
            guard !S3Location.isS3(location) else {
                throw VaultlineError(.unsupported, "this command works on a repository on a local disk only, not yet on S3", object: location)
            }
            return location
        }
    }

    /// The S3 backend when the repository is an `s3:` location, else nil.
    func s3Backend() throws -> S3Backend? {
        let location = try repositoryPath
        guard S3Location.isS3(location) else { return nil }
        return try openS3Backend(location, cache: !noCache)
    }

    /// The repository's files, wherever they are.
    func backend() throws -> any Backend {
        if let backend = try s3Backend() { return backend }
        return LocalBackend(root: try repositoryPath)
    }

    func open() throws -> Repository {
        let location = try repositoryPath
        if let backend = try s3Backend() {
            return try Repository.open(backend: backend, password: try password(), name: location)
        }
        return try Repository.open(path: location, password: try password())
    }
}

/// An S3 backend for an `s3:` location, configured from the environment (credentials, region,
/// `VAULTLINE_S3_*`); `lock` for a site-B bucket.
func openS3Backend(_ text: String, lock: ObjectLock? = nil, cache: Bool = true) throws -> S3Backend {
    let environment = ProcessInfo.processInfo.environment
    let addressing: S3Location.Addressing = environment["VAULTLINE_S3_VIRTUAL_HOSTED"] == "1" ? .virtualHosted : .path
    return try S3Backend.open(try S3Location(parsing: text, addressing: addressing), environment: environment,
                              home: environment["HOME"] ?? NSHomeDirectory(), lock: lock, cache: cache)
}

enum Secrets {
    /// A secret from a file (first line), an environment variable naming a file, an environment
    /// variable, or a terminal prompt — never from argv.
    static func read(file: String?, fileVariable: String, variable: String, prompt: String) throws -> [UInt8] {
        let env = ProcessInfo.processInfo.environment
        if let path = file ?? env[fileVariable].flatMap({ $0.isEmpty ? nil : $0 }) {
            let bytes = try FileSystem.readFile(path)
            let line = bytes.split(separator: UInt8(ascii: "\n"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
            var pw = Array(line)
            if pw.last == UInt8(ascii: "\r") { pw.removeLast() }
            guard !pw.isEmpty else { throw VaultlineError(.invalidArgument, "password file is empty", object: path) }
            return pw
        }
        if let pw = env[variable], !pw.isEmpty { return Array(pw.utf8) }
        if isatty(0) != 0, let p = getpass(prompt) {
            let pw = Array(String(cString: p).utf8)
            if !pw.isEmpty { return pw }
        }
        throw VaultlineError(.invalidArgument, "no password given: use --password-file, \(fileVariable) or \(variable)")
    }
}

/// Runs a command body, turning errors into a message on stderr and a documented exit status.
func reporting(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        throw report(error)
    }
}

func reporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        throw report(error)
    }
}

private func report(_ error: any Error) -> any Error {
    guard let failure = error as? any ContextualError else { return error }
    FileHandle.standardError.write(Data("vaultline: error: \(failure)\n".utf8))
    if ProcessInfo.processInfo.environment["VAULTLINE_DEBUG"] != nil {
        FileHandle.standardError.write(Data("vaultline: debug: [\(failure.code)] raised at \(failure.location)\n".utf8))
    }
    return ExitCode(exitStatus(for: failure))
}

/// The exit status (README, "Exit status") for an error of any of the libraries.
func exitStatus(for error: any ContextualError) -> Int32 {
    switch error {
    case let e as VaultlineError:
        return exitStatus(for: e.code)
    case let e as ReplicationError:
        switch e.code {
        case .notFound: return 10
        case .damagedSource, .hashMismatch: return 13
        case .malformed where !e.fromPeer: return 64
        default: return 1
        }
    case let e as GraphError:
        return e.code == .authentication ? 11 : 1
    default:
        return 1
    }
}

func exitStatus(for code: VaultlineError.Code) -> Int32 {
    switch code {
    case .notFound: 10
    case .wrongPassword: 11
    case .locked: 12
    case .corrupt: 13
    case .invalidArgument: 64
    default: 1
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    e.dateEncodingStrategy = .custom { date, encoder in
        var container = encoder.singleValueContainer()
        try container.encode(UTCTimestamp.rfc3339(date, milliseconds: false))
    }
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

/// Local time, to the second: how `snapshots`, `check` and `forget` show a snapshot's time.
func formatDate(_ date: Date) -> String {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f.string(from: date)
}

func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[i])
}

/// A one-line progress display on stderr, shown only when stderr is a terminal. Thread-safe:
/// backup readers report from several threads.
// @unchecked Sendable: its mutable state is behind `lock`
final class ProgressLine: @unchecked Sendable {
    let enabled = isatty(2) != 0
    private let lock = NSLock()
    private var last = Date.distantPast
    let started = Date()

    func update(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        guard Date().timeIntervalSince(last) > 0.25 else { return }
        last = Date()
        var line = text()
        if line.count > 110 { line = String(line.prefix(50)) + "…" + String(line.suffix(59)) }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
    }

    func done() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    var elapsed: Double { Date().timeIntervalSince(started) }
}

/// Writes a small file whole (a password, a certificate), created with `mode` or truncated.
func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
    try fd.write(bytes)
}
