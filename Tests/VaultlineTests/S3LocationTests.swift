import Foundation
import Testing
import VaultlineCore
import VaultlineS3

/// `--repo s3:…` and AWS-style credentials, before any request is made.
@Suite("S3 location and credentials")
struct S3LocationTests {
    @Test func locationsParseAsResticWritesThem() throws {
        let plain = try S3Location(parsing: "s3:http://127.0.0.1:8333/vaultline")
        #expect(plain == S3Location(secure: false, host: "127.0.0.1", port: 8333, bucket: "vaultline"))
        #expect(plain.target(key: plain.key("config")) == ("127.0.0.1:8333", "/vaultline/config"))
        let prefixed = try S3Location(parsing: "s3:https://s3.example.com/backups.site-a/tenant/contoso/", addressing: .virtualHosted)
        #expect(prefixed.secure && prefixed.port == 443 && prefixed.bucket == "backups.site-a" && prefixed.prefix == "tenant/contoso")
        #expect(prefixed.key("packs/ab/abcd") == "tenant/contoso/packs/ab/abcd")
        #expect(prefixed.target(key: "tenant/contoso/config") == ("backups.site-a.s3.example.com", "/tenant/contoso/config"))
        #expect(prefixed.description == "s3:https://s3.example.com/backups.site-a/tenant/contoso")
        #expect(try S3Location(parsing: "s3:http://[::1]:9000/b12").host == "[::1]")
        for bad in ["/srv/repo", "s3:ftp://h/b", "s3:http:///b", "s3:http://h", "s3:http://h/", "s3:http://h:0/bucket",
                    "s3:http://h:99999/bucket", "s3:http://key:secret@h/bucket", "s3:http://h/Bucket", "s3:http://h/ab",
                    "s3:http://h/-bucket", "s3:http://h/bu..cket", "s3:http://h/bucket//x", "s3:http://h/bucket/../x"] {
            expectError(VaultlineError.self, .invalidArgument, "\(bad)") { try S3Location(parsing: bad) }
        }
    }

    @Test func credentialsComeTheAWSWay() throws {
        let dir = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.path + "/.aws", withIntermediateDirectories: true)
        try """
        # shared credentials
        [default]
        aws_access_key_id = AKIDDEFAULT
        aws_secret_access_key = secret/default

        [site-b]
        aws_access_key_id=AKIDSITEB
        aws_secret_access_key=secretB
        aws_session_token = tokenB
        """.write(toFile: dir.path + "/.aws/credentials", atomically: true, encoding: .utf8)
        try "[profile site-b]\nregion = eu-west-3\n[default]\nregion=us-west-2\n".write(toFile: dir.path + "/.aws/config", atomically: true, encoding: .utf8)

        let env = try AWSCredentials.resolve(environment: ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t",
                                                           "AWS_DEFAULT_REGION": "ap-south-1", "AWS_PROFILE": "site-b"], home: dir.path)
        #expect(env.credentials == AWSCredentials(accessKeyID: "AKIDENV", secretAccessKey: "s", sessionToken: "t"))
        #expect(env.region == "ap-south-1" && env.source == "environment")
        let fallback = try AWSCredentials.resolve(environment: [:], home: dir.path)
        #expect(fallback.credentials.accessKeyID == "AKIDDEFAULT" && fallback.credentials.secretAccessKey == "secret/default" && fallback.region == "us-west-2")
        let profile = try AWSCredentials.resolve(environment: ["AWS_PROFILE": "site-b"], home: dir.path)
        #expect(profile.credentials == AWSCredentials(accessKeyID: "AKIDSITEB", secretAccessKey: "secretB", sessionToken: "tokenB"))
        #expect(profile.region == "eu-west-3" && profile.source.hasPrefix("profile site-b in "))
        #expect(try AWSCredentials.resolve(environment: ["AWS_REGION": "r1", "AWS_DEFAULT_REGION": "r2"], home: dir.path).region == "r1")

        let missingSecret = expectError(VaultlineError.self, .invalidArgument) { try AWSCredentials.resolve(environment: ["AWS_ACCESS_KEY_ID": "AKID"], home: dir.path) }
        #expect(missingSecret?.message.contains("AWS_SECRET_ACCESS_KEY") == true)
        expectError(VaultlineError.self, .invalidArgument) { try AWSCredentials.resolve(environment: ["AWS_PROFILE": "nope"], home: dir.path) }
        expectError(VaultlineError.self, .invalidArgument) { try AWSCredentials.resolve(environment: [:], home: dir.path + "/elsewhere") }
    }
}

/// S3's XML answers, read as hostile input.
@Suite("S3 XML answers")
struct S3XMLTests {
    static let page = """
    <?xml version="1.0" encoding="UTF-8"?>
    <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
      <Name>vaultline</Name><Prefix>packs/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
      <IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
      <Contents><Key>packs/ab/ab01</Key><LastModified>2026-12-01T10:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>16777216</Size><StorageClass>STANDARD</StorageClass></Contents>
      <Contents><Key>packs/ab/a&amp;b</Key><Size>0</Size></Contents>
    </ListBucketResult>
    """

    @Test func aListingPageReadsAsS3WritesIt() throws {
        let page = try S3XML.listPage(Array(Self.page.utf8), object: "list")
        #expect(page.objects == [.init(key: "packs/ab/ab01", size: 16_777_216), .init(key: "packs/ab/a&b", size: 0)])
        #expect(page.isTruncated && page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        let last = try S3XML.listPage(Array("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>".utf8), object: "list")
        #expect(last.objects.isEmpty && !last.isTruncated)
        let error = S3XML.errorBody(Array("<?xml version=\"1.0\"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>".utf8))
        #expect(error?.code == "PreconditionFailed")
        #expect(S3XML.errorBody([]) == nil)
    }

    @Test func answersThatAreNotS3sAreRefused() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><ListBucketResult><Contents><Key>&b;</Key><Size>1</Size></Contents></ListBucketResult>"
        let bad = [
            laughs,
            "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key><Size>12x</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "<ListAllMyBucketsResult></ListAllMyBucketsResult>",
            "<ListBucketResult><Contents><Key>k</Key><Size>1</Size>",
            "<a><b><c><d><e><f><g><h><i>deep</i></h></g></f></e></d></c></b></a>",
            "not xml at all",
        ]
        for text in bad {
            expectError(VaultlineError.self, .corrupt, "\(text.prefix(60))") { try S3XML.listPage(Array(text.utf8), object: "list") }
        }
        expectError(VaultlineError.self, .corrupt) { try S3XML.listPage([UInt8](repeating: 0x20, count: S3XML.maximumBodySize + 1), object: "list") }
    }
}
