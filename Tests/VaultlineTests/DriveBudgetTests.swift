import Foundation
import GraphSimulator
import Logging
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

/// The tenant's SharePoint and OneDrive budget: which requests pass it, what they cost, the
/// pause after a 429, and the pacing of the process's own budget. The budget shared through
/// PostgreSQL is tested in CoordinatorTests.
@Suite("Drive resource-unit budget") struct DriveBudgetTests {
    /// Records what passes, admits at once.
    actor RecordingBudget: DriveBudget {
        var admitted: [Int] = []
        var pauses: [Double] = []
        func admit(units: Int) async throws { admitted.append(units) }
        func pause(seconds: Double) async { pauses.append(seconds) }
    }

    @Test(.timeLimit(.minutes(2)))
    func everyDriveRequestAndOnlyThoseSpendTheBudgetAndA429PausesThem() async throws {
        let f = try await GraphFixture()
        let budget = RecordingBudget()
        let client = GraphClient(credentials: GraphFixture.credentials(f.sim), options: GraphFixture.fastRetries, driveBudget: budget)
        var logger = Logger(label: "test.m365")
        logger.logLevel = .critical
        _ = try await M365Backup(repository: f.repo, client: client, options: M365Backup.Options(), logger: logger).run()
        // Priced alike on both sides, and no mailbox request among them: the units the client
        // admitted are the units the simulator charged for drive requests.
        let admitted = await budget.admitted
        #expect(admitted.count > 0 && admitted.contains(2), "the first enumeration of a drive is a delta without a token")
        #expect(admitted.reduce(0, +) == f.sim.stats.driveResourceUnits)
        #expect(client.stats.driveUnits == f.sim.stats.driveResourceUnits)
        // A 429 pauses every drive request for its Retry-After.
        f.sim.faults.withLock { $0.throttleEvery = 2; $0.retryAfter = 0.05 }
        _ = f.sim.tenant.mutate(seed: 7, share: 0.3)
        _ = try await M365Backup(repository: f.repo, client: client, options: M365Backup.Options(), logger: logger).run()
        let pauses = await budget.pauses
        #expect(!pauses.isEmpty && pauses.allSatisfy { $0 == 0.05 }, "\(pauses)")
        #expect(pauses.count <= f.sim.stats.throttled)
        try await client.shutdown()
        await f.close()
    }

    @Test func theProcesssBudgetPacesItsUnitsAndHoldsItsPause() async throws {
        // 600 a minute is 10 a second, a second of it at once: 30 units take at least 2 s.
        let budget = LocalDriveBudget(unitsPerMinute: 600)
        let started = ContinuousClock.now
        for _ in 0..<15 { try await budget.admit(units: 2) }
        #expect(ContinuousClock.now - started >= .milliseconds(1_950))
        // A pause holds the next request, whatever the budget has left.
        let free = LocalDriveBudget(unitsPerMinute: 0)
        await free.pause(seconds: 0.5)
        let paused = ContinuousClock.now
        try await free.admit(units: 1)
        #expect(ContinuousClock.now - paused >= .milliseconds(450))
        // What Microsoft charges.
        #expect(GraphClient.resourceUnits(method: "GET", url: "https://g/v1.0/drives/d/root/delta") == 2)
        #expect(GraphClient.resourceUnits(method: "GET", url: "https://g/v1.0/drives/d/root/delta?token=abc") == 1)
        #expect(GraphClient.resourceUnits(method: "GET", url: "https://g/v1.0/drives/d/items/i/permissions") == 5)
        #expect(GraphClient.resourceUnits(method: "PUT", url: "https://g/v1.0/drives/d/items/i/content") == 2)
        #expect(GraphClient.resourceUnits(method: "GET", url: "https://g/v1.0/drives/d/items/i/content") == 1)
    }
}
