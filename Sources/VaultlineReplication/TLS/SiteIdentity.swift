import NIOCore
import NIOSSL

/// A site's TLS identity: its certificate chain and key, and the site CA that every peer must
/// chain to. Both sides of a connection use TLS 1.3 only and require the other's certificate.
public struct SiteIdentity: Sendable {
    public var certificateChain: [NIOSSLCertificate]
    public var privateKey: NIOSSLPrivateKey
    public var trustRoots: [NIOSSLCertificate]

    public init(certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey, trustRoots: [NIOSSLCertificate]) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustRoots = trustRoots
    }

    /// Loads PEM files; the error names the file that failed.
    public init(certificatePath: String, keyPath: String, caPath: String) throws {
        func load<T>(_ what: String, _ path: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch {
                throw ReplicationError(.certificate, "cannot load the \(what)", object: path, cause: error)
            }
        }
        certificateChain = try load("certificate", certificatePath) { try NIOSSLCertificate.fromPEMFile(certificatePath) }
        privateKey = try load("private key", keyPath) { try NIOSSLPrivateKey(file: keyPath, format: .pem) }
        trustRoots = try load("CA certificate", caPath) { try NIOSSLCertificate.fromPEMFile(caPath) }
        guard !certificateChain.isEmpty, !trustRoots.isEmpty else {
            throw ReplicationError(.certificate, "no certificate in the PEM file", object: certificateChain.isEmpty ? certificatePath : caPath)
        }
    }

    /// From PEM strings (tests, and `site issue-cert` output used in place).
    public init(certificatePEM: String, keyPEM: String, caPEM: String) throws {
        do {
            certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
            privateKey = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
            trustRoots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
        } catch {
            throw ReplicationError(.certificate, "cannot load the site identity", cause: error)
        }
    }

    private func configure(_ c: inout TLSConfiguration) {
        c.minimumTLSVersion = .tlsv13
        c.maximumTLSVersion = .tlsv13
        // The site CA is the trust; host names are not checked (sites are often reached by IP).
        c.certificateVerification = .noHostnameVerification
        c.trustRoots = .certificates(trustRoots)
    }

    public func serverContext() throws -> NIOSSLContext {
        var c = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configure(&c)
        return try NIOSSLContext(configuration: c)
    }

    public func clientContext() throws -> NIOSSLContext {
        var c = TLSConfiguration.makeClientConfiguration()
        c.certificateChain = certificateChain.map { .certificate($0) }
        c.privateKey = .privateKey(privateKey)
        configure(&c)
        return try NIOSSLContext(configuration: c)
    }
}
