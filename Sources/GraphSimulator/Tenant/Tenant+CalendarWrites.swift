import Foundation

/// Events, calendars, contacts and contact folders a client creates (a restore).
extension Tenant {
    /// The collection key of a calendar (its id, or the default calendar's) of a user.
    func calendarKey(user: User, _ calendar: String) -> String? {
        if calendar == Self.defaultCalendarId(user.id) || calendar.lowercased() == "calendar" { return Self.eventsKey(user.id) }
        let known = state.withLock { $0.otherCalendars[user.id] ?? [] }.contains { $0.id == calendar }
        return known ? Self.calendarKey(user.id, calendar) : nil
    }

    /// The collection key of a contact folder (the default one, `contacts-<user>`, or a created one).
    func contactFolderKey(user: User, _ folder: String) -> String? {
        if folder == "contacts-" + user.id || folder.lowercased() == "contacts" { return Self.contactsKey(user.id) }
        let known = state.withLock { $0.otherContactFolders[user.id] ?? [] }.contains { $0.id == folder }
        return known ? Self.contactsKey(user.id) + "/" + folder : nil
    }

    /// The default contact folder's id.
    static func defaultContactFolderId(_ user: String) -> String { "contacts-" + user }

    /// The contact folders directly below `parent` (nil: below the default folder, which is what
    /// Graph v1.0 lists for `/contactFolders`: not the default folder itself, not deeper ones;
    /// docs-contrib #6327).
    func contactFolders(user: User, parent: String? = nil) -> [(id: String, name: String, parent: String)] {
        let all = state.withLock { $0.otherContactFolders[user.id] ?? [] }
        let wanted = parent == Self.defaultContactFolderId(user.id) ? nil : parent
        return all.filter { $0.parent == wanted }.map { ($0.id, $0.name, $0.parent ?? Self.defaultContactFolderId(user.id)) }
    }

    func createCalendar(user: User, name: String) -> String? {
        state.withLock { s in
            if (s.otherCalendars[user.id] ?? []).contains(where: { $0.name == name }) || name == "Calendar" { return nil }
            let id = Self.makeId(&s, prefix: [0x00, 0x4B])
            s.otherCalendars[user.id, default: []].append(OtherCalendar(id: id, name: name))
            s.collections[Self.calendarKey(user.id, id)] = Collection()
            return id
        }
    }

    func createContactFolder(user: User, name: String) -> String? {
        state.withLock { s in
            if (s.otherContactFolders[user.id] ?? []).contains(where: { $0.name == name }) || name == "Contacts" { return nil }
            let id = Self.makeId(&s, prefix: [0x00, 0x43, 0x46])
            s.otherContactFolders[user.id, default: []].append(OtherCalendar(id: id, name: name))
            s.collections[Self.contactsKey(user.id) + "/" + id] = Collection()
            return id
        }
    }

    /// Stores a created event or contact under `key`; returns its id.
    func createJSONItem(key: String, _ payload: Payload) -> String {
        state.withLock { s in
            let id = Self.makeId(&s, prefix: [0x00, 0x46])
            s.seq += 1
            s.collections[key, default: Collection()].upsert(id, seq: s.seq, payload)
            return id
        }
    }

    /// Deletes one event (a whole series, for a series master) of any of a user's calendars
    /// (a user deleting it).
    @discardableResult
    public func deleteEvent(upn: String, id: String) -> Bool {
        guard let u = user(upn), let key = eventKey(user: u, id) else { return false }
        return state.withLock { s in
            guard s.collections[key]?.entries[id]?.deleted == nil, s.collections[key]?.entries[id] != nil else { return false }
            s.seq += 1
            s.collections[key]?.delete(id, seq: s.seq)
            return true
        }
    }

    /// Deletes one contact of a user's default folder.
    @discardableResult
    public func deleteContact(upn: String, id: String) -> Bool {
        guard let u = user(upn) else { return false }
        return state.withLock { s in
            let key = Self.contactsKey(u.id)
            guard s.collections[key]?.entries[id]?.deleted == nil, s.collections[key]?.entries[id] != nil else { return false }
            s.seq += 1
            s.collections[key]?.delete(id, seq: s.seq)
            return true
        }
    }
}
