import ArgumentParser
import Foundation
import Synchronization
import VaultlineCore
import VaultlineS3

extension Debug {
    /// The S3 backend's raw upload speed (tools/bench/object-storage compares it with rclone):
    /// each file is PUT as a pack named by its SHA-256, with the backend's conditional write and
    /// checksum, several at once.
    struct S3Upload: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "s3-upload",
            abstract: "Upload files through the S3 backend as packs and print the rate.")

        @OptionGroup var repository: RepositoryOptions
        @Option(help: "Uploads in flight at once.") var transfers = 4
        @Argument(help: "The files to upload.") var files: [String]

        func run() throws {
            try reporting {
                guard let backend = try repository.s3Backend() else {
                    throw VaultlineError(.invalidArgument, "s3-upload needs an s3: repository")
                }
                try backend.ensureBucket()
                try backend.probeConditionalWrites()
                let next = Atomic<Int>(0)
                let failure = Mutex<(any Error)?>(nil)
                let bytes = Atomic<Int>(0)
                let files = self.files
                let started = Date()
                DispatchQueue.concurrentPerform(iterations: max(1, min(transfers, files.count))) { _ in
                    while failure.withLock({ $0 == nil }) {
                        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                        guard index < files.count else { return }
                        do {
                            let content = try FileSystem.readFile(files[index])
                            try backend.writeIfAbsent(.pack, SHA256.hash(content).hex, content)
                            bytes.wrappingAdd(content.count, ordering: .relaxed)
                        } catch {
                            failure.withLock { $0 = error }
                        }
                    }
                }
                if let error = failure.withLock({ $0 }) { throw error }
                let seconds = Date().timeIntervalSince(started)
                let total = bytes.load(ordering: .relaxed)
                let stats = backend.client.stats
                print(String(format: "uploaded %d files, %.1f MiB in %.2f s: %.1f MiB/s, %d requests (%d retried), %d parts resumed",
                             files.count, Double(total) / 1_048_576, seconds, Double(total) / 1_048_576 / seconds, stats.requests, stats.retries,
                             backend.partsResumed.withLock { $0 }))
            }
        }
    }
}
