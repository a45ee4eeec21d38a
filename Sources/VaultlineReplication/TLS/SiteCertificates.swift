import Crypto
import Foundation
import SwiftASN1
import X509

/// The site CA and the site certificates that authenticate replication peers
/// (docs/PROTOCOL.md, "Transport and authentication"; docs/OPERATIONS.md).
///
/// Keys are ECDSA P-256 and signatures ECDSA-SHA256, made with swift-crypto and
/// swift-certificates. A site certificate carries its role as the SAN URI
/// `urn:vaultline:role:<role>` and is valid for both TLS server and client authentication.
public enum SiteCertificates {
    public static let roleURIPrefix = "urn:vaultline:role:"

    /// A certificate and its private key, both PEM.
    public struct Issued: Sendable {
        public var certificatePEM: String
        public var privateKeyPEM: String
    }

    /// Makes a self-signed CA for one organisation's sites.
    public static func makeCA(name: String, validDays: Int = 3650) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("Vaultline")
            CommonName(name)
        }
        let now = Date()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(validDays) * 86_400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        return Issued(certificatePEM: try cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// Issues a site certificate signed by the CA.
    /// - Parameters:
    ///   - name: the site's name (the subject's common name, and a DNS name when it is one).
    ///   - role: what the holder may do at its peer.
    ///   - hosts: DNS names and IP addresses to list as subject alternative names.
    public static func issue(
        caCertificatePEM: String, caKeyPEM: String, name: String, role: SiteRole, hosts: [String] = [], validDays: Int = 825
    ) throws -> Issued {
        let caCert = try Certificate(pemEncoded: caCertificatePEM)
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: caKeyPEM)
        guard caCert.publicKey == Certificate.PublicKey(caKey.publicKey) else {
            throw ReplicationError(.certificate, "the CA key does not belong to the CA certificate")
        }
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("Vaultline")
            OrganizationalUnitName(role.description)
            CommonName(name)
        }
        var sans: [GeneralName] = [.uniformResourceIdentifier(roleURIPrefix + role.description)]
        for host in hosts {
            if let ip = ipAddressBytes(host) { sans.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip)))) } else { sans.append(.dnsName(host)) }
        }
        let now = Date()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(validDays) * 86_400),
            issuer: caCert.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(sans)
                SubjectKeyIdentifier(hash: .init(key.publicKey))
                if let ski = try caCert.extensions.subjectKeyIdentifier {
                    AuthorityKeyIdentifier(keyIdentifier: ski.keyIdentifier)
                }
            },
            issuerPrivateKey: .init(caKey))
        return Issued(certificatePEM: try cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// The role a peer's certificate (DER) grants, or nil when it names none.
    public static func role(ofCertificateDER der: [UInt8]) throws -> SiteRole? {
        let cert = try Certificate(derEncoded: der)
        for name in try cert.extensions.subjectAlternativeNames ?? SubjectAlternativeNames() {
            if case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix(roleURIPrefix) {
                return SiteRole(name: String(uri.dropFirst(roleURIPrefix.count)))
            }
        }
        return nil
    }

    /// The subject of a certificate (DER), for logs.
    public static func subject(ofCertificateDER der: [UInt8]) -> String {
        (try? Certificate(derEncoded: der).subject.description) ?? "(unparsable certificate)"
    }

    static func ipAddressBytes(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        return nil
    }
}
