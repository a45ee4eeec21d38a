import Foundation

/// Locates `../shared/testdata` beside the repository checkout.
enum TestData {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    static var shared: URL {
        repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/testdata")
    }
}
