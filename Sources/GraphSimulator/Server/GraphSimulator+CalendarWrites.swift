import Foundation
import Hummingbird

/// Creating calendars, events, contact folders and contacts, as Graph does: an event's
/// attendees are sent invitations (counted, for tests to assert on); `transactionId` makes a
/// repeated POST of the same event return the first one.
extension GraphSimulator {
    /// A POST under `/users/{id}/` for calendars and contacts; nil when `p` is none of these.
    func calendarWrite(_ u: User, _ p: [String], json: [String: Any], body: [UInt8], method: HTTPRequest.Method) -> Response? {
        guard method == .post else { return occurrenceWrite(u, p, json: json, method: method) }
        switch p.count {
        case 3 where p[2] == "calendars":
            guard let name = json["name"] as? String, !name.isEmpty else { return Self.error(400, "ErrorInvalidRequest", "name is required.") }
            guard let id = tenant.createCalendar(user: u, name: name) else { return Self.error(409, "ErrorFolderExists", "A calendar with the specified name already exists.") }
            return Self.json(201, ["id": id, "name": name, "isDefaultCalendar": false])
        case 3 where p[2] == "contactFolders":
            guard let name = json["displayName"] as? String, !name.isEmpty else { return Self.error(400, "ErrorInvalidRequest", "displayName is required.") }
            guard let id = tenant.createContactFolder(user: u, name: name) else { return Self.error(409, "ErrorFolderExists", "A folder with the specified name already exists.") }
            return Self.json(201, ["id": id, "displayName": name, "parentFolderId": "contactsroot-" + u.id])
        case 3 where p[2] == "events", 4 where p[2] == "calendar" && p[3] == "events":
            return createEvent(u, key: Tenant.eventsKey(u.id), json: json, body: body)
        case 5 where p[2] == "calendars" && p[4] == "events":
            guard let key = tenant.calendarKey(user: u, p[3]) else { return notFound(p[3]) }
            return createEvent(u, key: key, json: json, body: body)
        case 3 where p[2] == "contacts":
            return createContact(key: Tenant.contactsKey(u.id), body: body)
        case 5 where p[2] == "contactFolders" && p[4] == "contacts":
            guard let key = tenant.contactFolderKey(user: u, p[3]) else { return notFound(p[3]) }
            return createContact(key: key, body: body)
        default:
            return nil
        }
    }

    private func createEvent(_ u: User, key: String, json: [String: Any], body: [UInt8]) -> Response {
        guard json["subject"] != nil || json["start"] != nil else { return Self.error(400, "ErrorInvalidRequest", "An event needs a start.") }
        if let transaction = json["transactionId"] as? String, !transaction.isEmpty {
            for e in tenant.collection(key)?.live ?? [] {
                guard case .event(let x) = e.payload, let data = x.json,
                      let stored = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                      stored["transactionId"] as? String == transaction else { continue }
                return Self.json(201, tenant.eventJSON(id: e.id, x))
            }
        }
        let attendees = (json["attendees"] as? [Any] ?? []).count
        let start = Tenant.eventTime(json["start"]) ?? Date()
        let end = Tenant.eventTime(json["end"]) ?? start
        var event = Event(subject: json["subject"] as? String ?? "", start: start, minutes: max(0, Int(end.timeIntervalSince(start) / 60)),
                          location: "", attendees: [], version: 1, json: Data(body))
        if json["recurrence"] != nil && !(json["recurrence"] is NSNull) {
            guard let recurrence = Recurrence(graph: json["recurrence"]) else {
                return Self.error(400, "ErrorInvalidRequest", "The simulator does not take this recurrence pattern.")
            }
            event.recurrence = recurrence
        }
        let id = tenant.createJSONItem(key: key, .event(event))
        counters.withLock {
            $0.eventsCreated += 1
            $0.invitationsSent += attendees
        }
        return Self.json(201, tenant.eventJSON(id: id, event))
    }

    private func createContact(key: String, body: [UInt8]) -> Response {
        let contact = Contact(givenName: "", surname: "", email: "", phone: "", version: 1, json: Data(body))
        let id = tenant.createJSONItem(key: key, .contact(contact))
        counters.withLock { $0.contactsCreated += 1 }
        return Self.json(201, tenant.contactJSON(id: id, contact))
    }

    /// PATCH on an occurrence makes it an exception (the fields merged into what it had); DELETE
    /// cancels it. Nil when `p` is not an occurrence.
    private func occurrenceWrite(_ u: User, _ p: [String], json: [String: Any], method: HTTPRequest.Method) -> Response? {
        guard p.count == 4, p[2] == "events", Tenant.splitInstanceID(p[3]) != nil, method == .patch || method == .delete else { return nil }
        let done = tenant.updateSeries(user: u, occurrence: p[3]) { e, index in
            if method == .delete {
                e.cancelled.insert(index)
                e.exceptions[index] = nil
                return true
            }
            var fields = e.exceptions[index].flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] } ?? [:]
            for (key, value) in json where !["id", "type", "seriesMasterId", "originalStart", "recurrence"].contains(key) { fields[key] = value }
            e.exceptions[index] = try? JSONSerialization.data(withJSONObject: fields)
            return true
        }
        guard let (master, event, index) = done else { return notFound(p[3]) }
        if method == .delete { return Response(status: .noContent) }
        counters.withLock { $0.invitationsSent += (json["attendees"] as? [Any] ?? []).count }
        return Self.json(200, tenant.instanceJSON(master: master, event, index: index) ?? [:])
    }
}
