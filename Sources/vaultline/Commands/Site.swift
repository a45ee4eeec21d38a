import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineReplication

struct Site: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the site CA and the site certificates that replication peers present.",
        subcommands: [SiteInit.self, SiteIssueCert.self])
}

struct SiteInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a site CA: DIR/ca.pem (give it to every site) and DIR/ca-key.pem (keep it offline).")

    @Option(help: "Folder to write the CA into.") var out: String
    @Option(help: "The CA's common name.") var name = "Vaultline site CA"
    @Option(help: "Validity in days.") var days = 3650

    func run() throws {
        try reporting {
            let ca = try SiteCertificates.makeCA(name: name, validDays: days)
            try FileSystem.makeDirectories(out)
            try writeNew(out + "/ca.pem", ca.certificatePEM, mode: 0o644)
            try writeNew(out + "/ca-key.pem", ca.privateKeyPEM, mode: 0o600)
            print("wrote \(out)/ca.pem and \(out)/ca-key.pem")
        }
    }
}

struct SiteIssueCert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue-cert",
        abstract: "Issue a site certificate: OUT/NAME.pem and OUT/NAME-key.pem.",
        discussion: """
            Roles: primary (pushes and reads: the backup node), replica (the receiver; reads its \
            peer for repair), monitor (reads inventories only).
            """)

    @Option(help: "The CA certificate.") var ca: String
    @Option(help: "The CA's private key.") var caKey: String
    @Option(help: "The site's name (certificate common name and file names).") var name: String
    @Option(help: "primary, replica or monitor.") var role: String
    @Option(help: "A DNS name or IP address of the site (repeatable).") var host: [String] = []
    @Option(help: "Folder to write into.") var out = "."
    @Option(help: "Validity in days.") var days = 825

    func run() throws {
        try reporting {
            guard let role = SiteRole(name: role) else {
                throw VaultlineError(.invalidArgument, "role must be primary, replica or monitor, not \(role)")
            }
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 32 && $0 != UInt8(ascii: "/") }) else {
                throw VaultlineError(.invalidArgument, "the name must be a non-empty word without slashes")
            }
            let issued = try SiteCertificates.issue(
                caCertificatePEM: String(decoding: try FileSystem.readFile(ca), as: UTF8.self),
                caKeyPEM: String(decoding: try FileSystem.readFile(caKey), as: UTF8.self),
                name: name, role: role, hosts: host, validDays: days)
            try FileSystem.makeDirectories(out)
            try writeNew("\(out)/\(name).pem", issued.certificatePEM, mode: 0o644)
            try writeNew("\(out)/\(name)-key.pem", issued.privateKeyPEM, mode: 0o600)
            print("wrote \(out)/\(name).pem and \(out)/\(name)-key.pem (role \(role))")
        }
    }
}

/// Writes a file that must not exist yet (keys are never overwritten by accident).
func writeNew(_ path: String, _ text: String, mode: mode_t) throws {
    guard !FileSystem.exists(path) else { throw VaultlineError(.alreadyExists, "refusing to overwrite", object: path) }
    let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode)
    try fd.write(Array(text.utf8))
    try fd.sync()
}
