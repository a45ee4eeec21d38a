import Testing
import VaultlineCore

/// Expects `body` to throw an `E` whose code is `code`, and returns it for further checks.
/// Asserting the code, not only the type, is what keeps a test from passing on the wrong failure.
@discardableResult
func expectError<E: ContextualError, R>(
    _ type: E.Type, _ code: E.Code, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) -> E? {
    let error = #expect(throws: E.self, comment, sourceLocation: sourceLocation, performing: { _ = try body() })
    if let error {
        #expect(error.code == code, "\(error.debugDescription)", sourceLocation: sourceLocation)
    }
    return error
}

@discardableResult
func expectError<E: ContextualError, R>(
    _ type: E.Type, _ code: E.Code, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> R
) async -> E? {
    let error = await #expect(throws: E.self, comment, sourceLocation: sourceLocation) { _ = try await body() }
    if let error {
        #expect(error.code == code, "\(error.debugDescription)", sourceLocation: sourceLocation)
    }
    return error
}
