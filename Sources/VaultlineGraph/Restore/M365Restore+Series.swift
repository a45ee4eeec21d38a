import Foundation
import VaultlineCore

/// A recurring series back as it was backed up. The master is posted with its recurrence,
/// which makes every occurrence of the pattern; then the new series' occurrences are listed
/// (`/instances` over the window the backup read) and compared, by original start, with the
/// occurrences and exceptions the backup holds: one the backup does not hold was cancelled
/// (DELETE), one it holds as an exception gets the exception's fields (PATCH). This is
/// Corso's approach, over Graph v1.0 only. Both requests are safe to repeat, so a run stopped
/// halfway reconciles again; the journal's `series` record ends it.
extension M365Restore {
    /// Fields of an exception a PATCH sets on the new occurrence.
    static let exceptionFields = ["subject", "body", "start", "end", "location", "locations", "isAllDay", "showAs", "importance", "sensitivity",
                                  "categories", "isReminderOn", "reminderMinutesBeforeStart", "attendees"]

    func reconcileSeries(user: String, master: String, stored: JSONValue, instances: [JSONValue], key: String, journal: RestoreJournal?) async throws {
        guard stored["type"]?.string == "seriesMaster", !instances.isEmpty else {
            if stored["type"]?.string == "seriesMaster" { try journal?.record("series", ["path": key]) }
            return
        }
        // What the backup holds, by original start: nil for a plain occurrence.
        var kept: [Date: JSONValue?] = [:]
        for instance in instances {
            let isException = instance["type"]?.string == "exception"
            guard let original = Self.originalStart(instance, exception: isException) else { continue }
            kept[original] = isException ? instance : nil
        }
        let url = client.url("users", user, "events", master, "instances") + "?" + M365Backup.calendarWindow
        var made: [(id: String, original: Date)] = []
        _ = try await client.pages(url, mailbox: user) { page in
            for o in page {
                guard let id = o["id"]?.string, let original = Self.originalStart(o, exception: true) ?? Self.originalStart(o, exception: false) else { continue }
                made.append((id, original))
            }
        }
        for occurrence in made {
            let occurrenceURL = client.url("users", user, "events", occurrence.id)
            guard let entry = kept[occurrence.original] else {
                do {
                    _ = try await client.write(.DELETE, occurrenceURL, mailbox: user, idempotent: true)
                } catch let error as GraphError where error.code == .notFound {}
                continue
            }
            guard let exception = entry else { continue }
            var patch: [String: JSONValue] = [:]
            let body = eventOrContactBody(exception, events: true, restoreKey: nil).object ?? [:]
            for field in Self.exceptionFields { if let value = body[field] { patch[field] = value } }
            guard !patch.isEmpty else { continue }
            _ = try await client.write(.PATCH, occurrenceURL, json: .object(patch), mailbox: user, idempotent: true)
        }
        try journal?.record("series", ["path": key])
    }

    /// When an occurrence was due by the pattern: an exception's `originalStart`, a plain
    /// occurrence's start.
    static func originalStart(_ json: JSONValue, exception: Bool) -> Date? {
        if exception { return json["originalStart"]?.string.flatMap { GraphDate.parse($0) } }
        return json["start"]?["dateTime"]?.string.flatMap { GraphDate.parse($0) }
    }
}
