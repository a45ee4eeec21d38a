import Crypto
import Foundation
import X509
import _CryptoExtras

/// The certificate an app registration has uploaded, as the identity platform keeps it: its
/// public key and thumbprints, to check client assertions (RS256 JWTs) against.
public struct RegisteredCertificate: Sendable {
    let key: _RSA.Signing.PublicKey
    let thumbprints: Set<String>

    /// From the certificate's PEM (a file may hold more, such as the private key: only the
    /// certificate is read).
    public init(pem: String) throws {
        guard let start = pem.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = pem.range(of: "-----END CERTIFICATE-----", range: start.upperBound..<pem.endIndex),
              let der = Data(base64Encoded: pem[start.upperBound..<end.lowerBound].filter { !$0.isWhitespace }) else {
            throw SimulatorConfigurationError(message: "no PEM certificate found")
        }
        let certificate = try Certificate(derEncoded: Array(der))
        guard let key = _RSA.Signing.PublicKey(certificate.publicKey) else {
            throw SimulatorConfigurationError(message: "the certificate's key is not RSA")
        }
        self.key = key
        thumbprints = [Self.base64url(Data(Insecure.SHA1.hash(data: der))), Self.base64url(Data(SHA256.hash(data: der)))]
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func unbase64url(_ s: Substring) -> Data? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t)
    }

    /// Nil when `jwt` is a valid assertion by `clientId` for a token endpoint ending in
    /// `audienceSuffix`; otherwise the identity platform's error code and description.
    func problem(with jwt: String, clientId: String, audienceSuffix: String, now: Date = Date()) -> (String, String)? {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let h = Self.unbase64url(parts[0]), let c = Self.unbase64url(parts[1]), let sig = Self.unbase64url(parts[2]),
              let header = try? JSONSerialization.jsonObject(with: h) as? [String: Any],
              let claims = try? JSONSerialization.jsonObject(with: c) as? [String: Any] else {
            return ("AADSTS50027", "JWT token is invalid or malformed.")
        }
        guard header["alg"] as? String == "RS256" else { return ("AADSTS5002738", "Invalid JWT token. 'RS256' is the supported signature algorithm.") }
        let named = [header["x5t"] as? String, header["x5t#S256"] as? String].compactMap { $0 }
        guard named.contains(where: thumbprints.contains) else {
            return ("AADSTS700027", "The certificate with identifier used to sign the client assertion is not registered on application.")
        }
        let input = Data(jwt.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: sig), for: input, padding: .insecurePKCS1v1_5) else {
            return ("AADSTS7000274", "Client assertion contains an invalid signature.")
        }
        guard claims["iss"] as? String == clientId, claims["sub"] as? String == clientId else {
            return ("AADSTS700023", "Client assertion audience claim does not match Realm issuer.")
        }
        guard let aud = claims["aud"] as? String, aud.hasSuffix(audienceSuffix) else {
            return ("AADSTS700016", "Invalid audience in the client assertion.")
        }
        let t = now.timeIntervalSince1970
        guard let exp = claims["exp"] as? Double, exp > t, (claims["nbf"] as? Double ?? 0) <= t + 300 else {
            return ("AADSTS700024", "Client assertion is not within its valid time range.")
        }
        return nil
    }
}

struct SimulatorConfigurationError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
