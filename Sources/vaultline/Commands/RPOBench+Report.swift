import Foundation
import GraphSimulator
import VaultlineCore
import VaultlineGraph
import VaultlineService
#if canImport(Glibc)
import Glibc
#endif

extension RPOBench {
    /// Every snapshot at site A: when it was written there and at site B, and up to which change
    /// each collection's delta link in its source state has served.
    struct Captures {
        struct Stored {
            var writtenA: Date
            var writtenB: Date?
            var positions: [String: Int]
        }
        var snapshots: [String: Stored] = [:]

        /// Reads what is new since the bench's last reading (a snapshot's positions are
        /// decoded once).
        static func read(_ bench: RPOBench) throws -> Captures {
            var out = bench.lastCaptures ?? Captures()
            let siteA = LocalBackend(root: bench.base + "/site-a")
            let siteB = bench.base + "/site-b/" + bench.repositoryID
            let repository = try bench.openedRepository()
            for id in try siteA.list(.snapshot) {
                if out.snapshots[id] == nil {
                    guard let written = modified(siteA.path(.snapshot, id)) else { continue }
                    let snapshot = try repository.loadSnapshot(id)
                    out.snapshots[id] = Stored(writtenA: written, positions: positions(M365State.decode(snapshot.sourceState)))
                }
                if out.snapshots[id]?.writtenB == nil {
                    out.snapshots[id]?.writtenB = modified(LocalBackend(root: siteB).path(.snapshot, id))
                }
            }
            bench.lastCaptures = out
            return out
        }

        static func positions(_ state: M365State?) -> [String: Int] {
            guard let state else { return [:] }
            var links: [String] = Array(state.libraries.values)
            for user in state.users.values {
                links += [user.mailFoldersDelta, user.eventsDelta, user.driveDelta].compactMap { $0 }
                links += user.folderDeltas.values
                links += user.contactDeltas.values
            }
            var out: [String: Int] = [:]
            for link in links {
                if let (collection, seq) = GraphSimulator.deltaPosition(link) { out[collection] = max(out[collection] ?? 0, seq) }
            }
            return out
        }

        static func modified(_ path: String) -> Date? {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            return Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        }

        /// When a change was first in a snapshot at each site (nil: not yet).
        func captured(_ change: Tenant.Change) -> (a: Date?, b: Date?) {
            var a: Date?, b: Date?
            for stored in snapshots.values where (stored.positions[change.collection] ?? -1) >= change.seq {
                a = min(a ?? stored.writtenA, stored.writtenA)
                if let writtenB = stored.writtenB { b = min(b ?? writtenB, writtenB) }
            }
            return (a, b)
        }

        func missing(_ changes: [(time: Date, change: Tenant.Change)]) -> Int {
            changes.filter { let c = captured($0.change); return c.a == nil || c.b == nil }.count
        }
    }

    /// The measurement: per change, seconds until it was in a snapshot at site A, at site B, and
    /// how far B was behind A for it.
    struct Report: Encodable {
        struct Spread: Encodable {
            var count: Int
            var p50: Double
            var p99: Double
            var max: Double

            init(_ values: [Double]) {
                let sorted = values.sorted()
                func at(_ p: Double) -> Double {
                    guard !sorted.isEmpty else { return 0 }
                    return sorted[Swift.min(sorted.count - 1, Swift.max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
                }
                count = sorted.count
                p50 = at(0.5)
                p99 = at(0.99)
                max = sorted.last ?? 0
            }

            var text: String { String(format: "p50 %.1f s, p99 %.1f s, max %.1f s (%d changes)", p50, p99, max, count) }
        }

        var seconds: Double
        var rate: Double
        var users: Int
        var settings: [String: Double]
        var changes: Int
        var siteA: Spread
        var siteB: Spread
        var siteBBehindA: Spread
        /// The same for the changes stored at site A outside the cut to site B (from the kill
        /// of its receiver to one commit interval after its restart, when the backlog is sent).
        var siteBBehindAOutsideTheCut: Spread?
        var lost: Int
        var snapshots: Int
        var faults: [String]
        var passes: Int?

        init(settings s: Debug.RPO, changes: [(time: Date, change: Tenant.Change)], captures: Captures, faults: [String], status: ServiceStatus?,
             cut: (Date, Date)?) {
            seconds = s.seconds
            rate = s.rate
            users = s.users
            settings = ["rpo": s.rpo, "commitInterval": s.commitInterval, "mailInterval": s.mailInterval, "driveInterval": s.driveInterval,
                        "debounce": s.debounce]
            self.changes = changes.count
            var a: [Double] = [], b: [Double] = [], lag: [Double] = [], lagOutside: [Double] = []
            var lost = 0
            for (time, change) in changes {
                let c = captures.captured(change)
                guard let atA = c.a, let atB = c.b else { lost += 1; continue }
                a.append(atA.timeIntervalSince(time))
                b.append(atB.timeIntervalSince(time))
                lag.append(atB.timeIntervalSince(atA))
                if let (from, to) = cut, atA >= from, atA <= to.addingTimeInterval(s.commitInterval) { continue }
                lagOutside.append(atB.timeIntervalSince(atA))
            }
            siteBBehindAOutsideTheCut = cut == nil ? nil : Spread(lagOutside)
            siteA = Spread(a)
            siteB = Spread(b)
            siteBBehindA = Spread(lag)
            self.lost = lost
            snapshots = captures.snapshots.count
            self.faults = faults
            passes = status?.passes
        }

        var text: String {
            var lines = [String(format: "%d changes in %.0f s (%.1f/s) over %d users; %d snapshots", changes, seconds, rate, users, snapshots)]
            lines.append("settings: " + settings.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            for fault in faults { lines.append("fault: " + fault) }
            lines.append("in a snapshot at site A: " + siteA.text)
            lines.append("in a snapshot at site B: " + siteB.text)
            lines.append("site B behind site A:    " + siteBBehindA.text)
            if let outside = siteBBehindAOutsideTheCut { lines.append("  outside the cut to B:  " + outside.text) }
            lines.append(lost == 0 ? "no change lost" : "\(lost) changes NOT at both sites by the deadline")
            return lines.joined(separator: "\n")
        }
    }

    func openedRepository() throws -> Repository {
        if let repository = openRepository { return repository }
        let repository = try Repository.open(path: base + "/site-a", password: password)
        openRepository = repository
        return repository
    }
}
