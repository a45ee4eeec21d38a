import Foundation
import VaultlineCore

extension AWSCredentials {
    /// Where credentials and the region came from, for messages (never the secret itself).
    public struct Resolved: Sendable, Equatable {
        public var credentials: AWSCredentials
        public var region: String
        /// `environment` or `profile NAME in PATH`.
        public var source: String
    }

    /// Credentials the AWS way, in the order the AWS CLI and SDKs use: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE`
    /// (`default` when unset) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
    /// else `~/.aws/credentials`). The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
    /// `region` in `AWS_CONFIG_FILE` (else `~/.aws/config`), else `us-east-1` (what S3-compatible
    /// servers that do not care about regions accept).
    public static func resolve(environment: [String: String], home: String) throws -> Resolved {
        let profile = environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        let configPath = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let config = (try? String(contentsOfFile: configPath, encoding: .utf8)).map(Self.parseINI) ?? [:]
        let configSection = profile == "default" ? (config["default"] ?? config["profile default"]) : config["profile " + profile]
        let region = environment["AWS_REGION"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["AWS_DEFAULT_REGION"].flatMap { $0.isEmpty ? nil : $0 }
            ?? configSection?["region"] ?? "us-east-1"

        if let key = environment["AWS_ACCESS_KEY_ID"], !key.isEmpty {
            guard let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw VaultlineError(.invalidArgument, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return Resolved(credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token),
                            region: region, source: "environment")
        }
        let path = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw VaultlineError(.invalidArgument, "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a credentials file", object: path)
        }
        guard let section = Self.parseINI(text)[profile] else {
            throw VaultlineError(.invalidArgument, "no profile [\(profile)] in the credentials file", object: path)
        }
        guard let key = section["aws_access_key_id"], !key.isEmpty, let secret = section["aws_secret_access_key"], !secret.isEmpty else {
            throw VaultlineError(.invalidArgument, "profile [\(profile)] has no aws_access_key_id and aws_secret_access_key", object: path)
        }
        return Resolved(credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: section["aws_session_token"]),
                        region: section["region"] ?? region, source: "profile \(profile) in \(path)")
    }

    /// The sections of an AWS INI file: `[name]` lines, then `key = value` lines; `#` and `;`
    /// start comments; keys are lower-cased, values trimmed.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                current = name
                sections[name, default: [:]] = sections[name] ?? [:]
            } else if let current, let equals = line.firstIndex(of: "=") {
                let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
                let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                sections[current, default: [:]][key] = value
            }
        }
        return sections
    }
}
