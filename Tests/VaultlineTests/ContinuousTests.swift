import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GraphSimulator
import Logging
import ServiceLifecycle
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineService

/// `m365 serve`: the schedule's arithmetic, passes that poll only what is due and carry the rest
/// exactly, and the service's HTTP face.
@Suite("Continuous protection")
struct ContinuousTests {
    static let mail = CollectionKey(.mailFolder, user: "u1", id: "inbox")
    static let drive = CollectionKey(.onedrive, user: "u1")

    /// Runs one pass of `schedule` in which `outcomes` are what the rounds found.
    static func pass(_ schedule: CollectionSchedule, at start: Date, seconds: Double = 1, _ outcomes: [CollectionKey: CollectionOutcome],
                     committed: Bool = true) -> [CollectionKey: Bool] {
        let plan = schedule.beginPass(at: start)
        var due: [CollectionKey: Bool] = [:]
        for key in [mail, drive] { due[key] = plan.isDue(key) }
        for (key, outcome) in outcomes where due[key] == true { plan.polled(key, outcome) }
        schedule.finish(plan, at: start.addingTimeInterval(seconds), committed: committed)
        return due
    }

    @Test func quietCollectionsBackOffToTheCapAndChangedOnesComeBackSoon() throws {
        var policy = CollectionSchedule.Policy()
        policy.rpoSeconds = 100
        policy.mailBaseSeconds = 10
        policy.driveBaseSeconds = 20
        policy.debounceSeconds = 2
        policy.retrySeconds = 7
        policy.commitIntervalSeconds = 10
        policy.quietDoubles = true
        let schedule = CollectionSchedule(policy: policy)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        func due(_ key: CollectionKey) throws -> Double { try #require(schedule.entries[key]).nextDue.timeIntervalSince(t0) }

        // Unknown collections are due; a change brings it back after the debounce, a quiet one
        // after its base interval.
        #expect(Self.pass(schedule, at: t0, [Self.mail: .changed, Self.drive: .unchanged]) == [Self.mail: true, Self.drive: true])
        #expect(try due(Self.mail) == 3)
        #expect(try due(Self.drive) == 21)
        // Quiet from then on: the base, then doubling, then the cap (RPO less the commit interval
        // and the p99 pass, 1 s).
        var start = t0.addingTimeInterval(3)
        var intervals: [Double] = []
        for _ in 0..<5 {
            let asked = Self.pass(schedule, at: start, [Self.mail: .unchanged])
            #expect(asked[Self.mail] == true)
            let next = try #require(schedule.entries[Self.mail]).nextDue
            intervals.append(next.timeIntervalSince(start.addingTimeInterval(1)))
            start = next
        }
        #expect(intervals == [10, 20, 40, 80, 89])
        #expect(schedule.capSeconds == 89)
        // Not due before its time.
        #expect(Self.pass(schedule, at: start.addingTimeInterval(-1), [:])[Self.mail] == false)
        // A failed pass changes nothing but the retry time.
        let synced = schedule.entries[Self.mail]?.lastSynced
        _ = Self.pass(schedule, at: start, [Self.mail: .changed], committed: false)
        #expect(schedule.entries[Self.mail]?.lastSynced == synced)
        #expect(try due(Self.mail) == start.addingTimeInterval(1 + 7).timeIntervalSince(t0))
        // A failed round: retried after the retry time, its last sync kept.
        _ = Self.pass(schedule, at: start.addingTimeInterval(8), [Self.mail: .failed])
        #expect(schedule.entries[Self.mail]?.lastSynced == synced)
        #expect(schedule.entries[Self.mail]?.lastOutcome == .failed)
    }

    @Test func quietCollectionsKeepTheirIntervalAndManyDrivesShareTheirBudget() {
        let schedule = CollectionSchedule()  // the defaults: mail 30 s, drives 45 s, 600 drive polls a minute
        var start = Date(timeIntervalSince1970: 1_800_000_000)
        var mail: [Double] = [], drive: [Double] = []
        for _ in 0..<3 {
            _ = Self.pass(schedule, at: start, seconds: 0, [Self.mail: .unchanged, Self.drive: .unchanged])
            mail.append(schedule.entries[Self.mail]?.intervalSeconds ?? 0)
            drive.append(schedule.entries[Self.drive]?.intervalSeconds ?? 0)
            start = start.addingTimeInterval(10_000)
        }
        #expect(mail == [30, 30, 30])
        #expect(drive == [45, 45, 45])
        // 1,000 drives: 600 polls a minute reach each every 100 s; 3,000 would need 300 s, past
        // the cap (300 - 60 - 0): the cap wins, and the RPO holds at the budget's expense.
        for (count, expected) in [(1_000, 100.0), (3_000, 240.0)] {
            let many = CollectionSchedule()
            let plan = many.beginPass(at: start)
            for i in 0..<count { plan.polled(CollectionKey(.library, user: nil, id: "d\(i)"), .unchanged) }
            many.finish(plan, at: start, committed: true)
            let again = many.beginPass(at: start.addingTimeInterval(1))
            for i in 0..<count { again.polled(CollectionKey(.library, user: nil, id: "d\(i)"), .unchanged) }
            many.finish(again, at: start.addingTimeInterval(1), committed: true)
            #expect(many.entries[CollectionKey(.library, user: nil, id: "d0")]?.intervalSeconds == expected, "\(count) drives")
        }
    }

    @Test func collectionsThatVanishAreForgottenAndCarriedUsersAreNot() {
        let schedule = CollectionSchedule()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        _ = Self.pass(schedule, at: t0, [Self.mail: .unchanged, Self.drive: .unchanged])
        // The user carried whole (nothing of it due): its collections stay.
        let carried = schedule.beginPass(at: t0.addingTimeInterval(2))
        #expect(!carried.anyDue(user: "u1"))
        schedule.finish(carried, at: t0.addingTimeInterval(3), committed: true)
        #expect(schedule.entries.count == 2)
        // A pass that no longer meets the drive (the user lost the licence) forgets it.
        let later = schedule.beginPass(at: t0.addingTimeInterval(500))
        #expect(later.anyDue(user: "u1"))
        #expect(later.isDue(Self.mail))
        later.polled(Self.mail, .unchanged)
        schedule.finish(later, at: t0.addingTimeInterval(501), committed: true)
        #expect(Set(schedule.entries.keys) == [Self.mail])
        // A user never seen is due; a reset counts as a change and is counted.
        let third = schedule.beginPass(at: t0.addingTimeInterval(1000))
        #expect(third.anyDue(user: "someone else"))
        third.polled(Self.mail, .unchanged)
        third.polled(Self.mail, .reset)  // a user's two calendars: the weightier outcome stays
        third.polled(Self.mail, .unchanged)
        schedule.finish(third, at: t0.addingTimeInterval(1001), committed: true)
        #expect(schedule.entries[Self.mail]?.resets == 1)
        #expect(schedule.entries[Self.mail]?.lastOutcome == .reset)
    }
}

/// sd_notify's wire form: one datagram per message to the socket `$NOTIFY_SOCKET` names.
@Suite("Continuous protection: systemd notifications")
struct SystemdNotifierTests {
    @Test func messagesArriveAsDatagramsOnAPathAndAnAbstractSocket() throws {
        let dir = TemporaryDirectory()
        for address in [dir.path + "/notify", "@vaultline-test-\(getpid())"] {
            let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            #expect(fd >= 0)
            defer { close(fd) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            var path = Array(address.utf8)
            if path.first == UInt8(ascii: "@") { path[0] = 0 }
            withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path) }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            #expect(bound == 0, "bind \(address)")
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

            let notifier = SystemdNotifier(address: address)
            #expect(notifier.send("READY=1"))
            #expect(notifier.send("WATCHDOG=1"))
            var buffer = [UInt8](repeating: 0, count: 64)
            for expected in ["READY=1", "WATCHDOG=1"] {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                #expect(n > 0 && String(decoding: buffer[0..<max(0, n)], as: UTF8.self) == expected)
            }
        }
        // Nobody listening: the send fails, and nothing else happens.
        #expect(!SystemdNotifier(address: dir.path + "/nobody").send("READY=1"))
    }
}
