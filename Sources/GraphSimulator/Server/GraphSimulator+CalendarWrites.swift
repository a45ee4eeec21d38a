import Foundation
import Hummingbird

/// Creating calendars, events, contact folders and contacts, as Graph does: an event's
/// attendees are sent invitations (counted, for tests to assert on); `transactionId` makes a
/// repeated POST of the same event return the first one.
extension GraphSimulator {
    /// A POST under `/users/{id}/` for calendars and contacts; nil when `p` is none of these.
    func calendarWrite(_ u: User, _ p: [String], json: [String: Any], body: [UInt8], method: HTTPRequest.Method) -> Response? {
        guard method == .post else { return nil }
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
        let event = Event(subject: json["subject"] as? String ?? "", start: Date(), minutes: 0, location: "", attendees: [], version: 1, json: Data(body))
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
}
