import ArgumentParser
import Foundation
import GraphSimulator
import VaultlineCore

/// Serves a simulated tenant over HTTP until SIGINT or SIGTERM.
struct GraphSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph-sim", abstract: "Serve a simulated Microsoft 365 tenant (Graph API) for tests and demos.")

    @Option(help: "Address to listen on.")
    var listen = "127.0.0.1:8365"

    @Option(help: "Seed of the generated tenant.")
    var seed: UInt64 = 2026

    @Option(help: "Users in the tenant.")
    var users = 3

    @Option(help: "Messages per mailbox.")
    var messages = 60

    @Option(help: "Drive files per user.")
    var files = 10

    @Option(help: "File holding the client secret the token endpoint accepts (or VAULTLINE_GRAPH_SECRET).")
    var clientSecretFile: String?

    @Option(help: "PEM file whose certificate the token endpoint also accepts (client assertions signed by its key).")
    var clientCertificateFile: String?

    @Option(help: "Largest generated drive file (KiB).")
    var maxFileKib = 2048

    @Option(help: "One large file per user of this size (MiB; 0: none).")
    var largeFileMib = 0

    @Option(help: "Events and contacts per user.")
    var eventsAndContacts = 10

    @Option(help: "SharePoint sites.")
    var sites = 1

    @Option(help: "Per-mailbox request limit per second, answered 429 past it (0: none; Graph: 16.7).")
    var mailboxRps = 0.0

    @Option(help: "Answer every Nth request with 429 and Retry-After (0: never).")
    var throttleEvery = 0

    @Option(help: "Seconds of latency per request.")
    var latency = 0.0

    func run() async throws {
        try await reporting {
            let parts = listen.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else { throw VaultlineError(.invalidArgument, "--listen wants HOST:PORT") }
            let secret: String
            if let f = clientSecretFile { secret = String(decoding: try FileSystem.readFile(f), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
            else if let s = ProcessInfo.processInfo.environment["VAULTLINE_GRAPH_SECRET"] { secret = s }
            else { throw VaultlineError(.invalidArgument, "no client secret: use --client-secret-file or VAULTLINE_GRAPH_SECRET") }
            var spec = TenantSpec.demo
            spec.seed = seed
            spec.users = users
            spec.messagesPerUser = messages
            spec.filesPerUser = files
            spec.maxFileSize = max(spec.minFileSize + 1, maxFileKib << 10)
            spec.largeFileSize = largeFileMib << 20
            spec.eventsPerUser = eventsAndContacts
            spec.contactsPerUser = eventsAndContacts
            spec.sites = sites
            var certificate: RegisteredCertificate?
            if let file = clientCertificateFile {
                do {
                    certificate = try RegisteredCertificate(pem: String(decoding: try FileSystem.readFile(file), as: UTF8.self))
                } catch let e as VaultlineError { throw e } catch {
                    throw VaultlineError(.invalidArgument, "cannot read the certificate: \(error)", object: file)
                }
            }
            let sim = GraphSimulator(tenant: Tenant(spec: spec), clientSecret: secret, clientCertificate: certificate)
            sim.faults.withLock {
                $0.throttleEvery = throttleEvery
                $0.latency = latency
                $0.mailboxRequestsPerSecond = mailboxRps
            }
            let bound = try await sim.start(host: String(parts[0]), port: port)
            print("graph simulator on http://\(parts[0]):\(bound): tenant \(sim.tenantId), client \(sim.clientId), \(sim.tenant.itemCount) items")
            print("  --graph-url http://\(parts[0]):\(bound)/v1.0 --authority http://\(parts[0]):\(bound) --tenant \(sim.tenantId) --client-id \(sim.clientId)")
            let (signals, continuation) = AsyncStream.makeStream(of: Int32.self)
            signal(SIGTERM, SIG_IGN)
            signal(SIGINT, SIG_IGN)
            let sources = [SIGTERM, SIGINT].map { sig in
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { continuation.yield(sig) }
                source.resume()
                return source
            }
            defer { sources.forEach { $0.cancel() } }
            for await _ in signals { break }
            await sim.stop()
        }
    }
}
