import Crypto
import Foundation
import _CryptoExtras

/// An app registration's certificate credential (the client-assertion form of the client
/// credentials grant, which Microsoft recommends over secrets): the certificate, whose
/// thumbprint names it, and its RSA private key, which signs a short-lived JWT for each token
/// request. Read from one PEM file holding both (`-----BEGIN CERTIFICATE-----` and
/// `-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA PRIVATE KEY-----`).
public struct ClientCertificate: Sendable {
    let key: _RSA.Signing.PrivateKey
    /// base64url SHA-1 and SHA-256 of the certificate's DER (`x5t`, `x5t#S256`).
    let thumbprint: String
    let thumbprintSHA256: String

    /// `source` names the file in errors.
    public init(pem: String, source: String) throws {
        func block(_ labels: [String]) -> (label: String, text: String)? {
            for label in labels {
                guard let start = pem.range(of: "-----BEGIN \(label)-----"),
                      let end = pem.range(of: "-----END \(label)-----", range: start.upperBound..<pem.endIndex) else { continue }
                return (label, String(pem[start.lowerBound..<end.upperBound]))
            }
            return nil
        }
        guard let cert = block(["CERTIFICATE"]) else {
            throw GraphError(.authentication, "no certificate (-----BEGIN CERTIFICATE-----) in the credential file", url: source)
        }
        guard let keyBlock = block(["PRIVATE KEY", "RSA PRIVATE KEY"]) else {
            throw GraphError(.authentication, "no unencrypted RSA private key (-----BEGIN PRIVATE KEY-----) in the credential file", url: source)
        }
        let base64 = cert.text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined().trimmingCharacters(in: .whitespacesAndNewlines)
        guard let der = Data(base64Encoded: base64.replacingOccurrences(of: "\r", with: "")) else {
            throw GraphError(.authentication, "the certificate is not valid base64", url: source)
        }
        do {
            key = try _RSA.Signing.PrivateKey(pemRepresentation: keyBlock.text)
        } catch {
            throw GraphError(.authentication, "the private key cannot be read as an RSA key (\(error))", url: source)
        }
        thumbprint = Self.base64url(Data(Insecure.SHA1.hash(data: der)))
        thumbprintSHA256 = Self.base64url(Data(SHA256.hash(data: der)))
    }

    /// A signed client assertion for the token endpoint `audience` (RS256, ten minutes).
    func assertion(audience: String, clientId: String, now: Date = Date()) throws -> String {
        let t = Int(now.timeIntervalSince1970)
        let header: [String: Any] = ["alg": "RS256", "typ": "JWT", "x5t": thumbprint, "x5t#S256": thumbprintSHA256]
        let claims: [String: Any] = [
            "aud": audience, "iss": clientId, "sub": clientId, "jti": UUID().uuidString,
            "nbf": t - 60, "iat": t, "exp": t + 600,
        ]
        let input = Self.base64url(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes]))
            + "." + Self.base64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys, .withoutEscapingSlashes]))
        let signature = try key.signature(for: Data(input.utf8), padding: .insecurePKCS1v1_5)
        return input + "." + Self.base64url(signature.rawRepresentation)
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
