import Foundation
import Hummingbird

/// A user's calendars (`GET /users/{id}/calendars`) and the events of one calendar
/// (`GET /users/{id}/calendars/{id}/events`, paged by `$skip` as Graph pages them). The default
/// calendar's events are the calendar view's; Graph v1.0 has a delta function only for that
/// view, so other calendars are listed in full.
extension GraphSimulator {
    /// `flagDefault`: false answers as v1.0's documented example does, without `isDefaultCalendar`.
    func calendars(user u: User, flagDefault: Bool = true) -> Response {
        let others = tenant.state.withLock { $0.otherCalendars[u.id] ?? [] }
        var value = [calendarJSON(id: Tenant.defaultCalendarId(u.id), name: "Calendar", user: u, isDefault: true)]
        value += others.map { calendarJSON(id: $0.id, name: $0.name, user: u, isDefault: false) }
        if !flagDefault { value = value.map { $0.filter { $0.key != "isDefaultCalendar" } } }
        return Self.json(200, ["@odata.context": "\(graphURL)/$metadata#users('\(u.id)')/calendars", "value": value])
    }

    func calendarEvents(user u: User, calendar: String, query: [String: String], request: Request) -> Response {
        let key = calendar == Tenant.defaultCalendarId(u.id) ? Tenant.eventsKey(u.id) : Tenant.calendarKey(u.id, calendar)
        guard let collection = tenant.collection(key) else { return notFound(calendar) }
        let size = Self.pageSize(request, query: query, default: 10)
        let offset = query["$skip"].flatMap(Int.init) ?? 0
        let live = collection.live
        var value: [[String: Any]] = []
        for e in live.dropFirst(offset).prefix(size) {
            if case .event(let x) = e.payload { value.append(tenant.eventJSON(id: e.id, x)) }
        }
        var body: [String: Any] = ["@odata.context": "\(graphURL)/$metadata#users('\(u.id)')/calendars('\(calendar)')/events", "value": value]
        if offset + size < live.count {
            body["@odata.nextLink"] = "\(graphURL)/users/\(u.id)/calendars/\(calendar.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? calendar)/events?$top=\(size)&$skip=\(offset + size)"
        }
        return Self.json(200, body)
    }

    /// `GET /users/{id}/events/{master}/instances?startDateTime&endDateTime`: the occurrences
    /// and exceptions of a series that start in the window, paged by `$skip` (10 by default).
    func eventInstances(user u: User, master: String, query: [String: String], request: Request) -> Response {
        guard let from = query["startDateTime"].flatMap(Tenant.parseISO), let to = query["endDateTime"].flatMap(Tenant.parseISO) else {
            return Self.error(400, "ErrorInvalidParameter", "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.")
        }
        guard let key = tenant.eventKey(user: u, master), case .event(let e)? = tenant.entry(key, master)?.payload else { return notFound(master) }
        let all = tenant.instances(master: master, e).filter { o in
            guard let start = Tenant.eventTime(o["start"]) else { return false }
            return start >= from && start < to
        }
        let size = Self.pageSize(request, query: query, default: 10)
        let offset = query["$skip"].flatMap(Int.init) ?? 0
        var body: [String: Any] = ["@odata.context": "\(graphURL)/$metadata#Collection(event)", "value": Array(all.dropFirst(offset).prefix(size))]
        if offset + size < all.count {
            let window = "startDateTime=\(Tenant.iso(from))&endDateTime=\(Tenant.iso(to))"
            body["@odata.nextLink"] = "\(graphURL)/users/\(u.id)/events/\(master.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? master)/instances?\(window)&$top=\(size)&$skip=\(offset + size)"
        }
        return Self.json(200, body)
    }

    /// A calendar as Graph describes one (Microsoft's calendar resource).
    private func calendarJSON(id: String, name: String, user u: User, isDefault: Bool) -> [String: Any] {
        [
            "@odata.id": "\(graphURL)/users('\(u.id)')/calendars('\(id)')",
            "id": id, "name": name, "color": isDefault ? "auto" : "lightBlue", "hexColor": "",
            "isDefaultCalendar": isDefault, "changeKey": Tenant.changeKey(id, "1"),
            "canShare": true, "canViewPrivateItems": true, "canEdit": true, "isRemovable": !isDefault,
            "allowedOnlineMeetingProviders": ["teamsForBusiness"], "defaultOnlineMeetingProvider": "teamsForBusiness",
            "isTallyingResponses": true, "owner": ["name": u.displayName, "address": u.upn],
        ]
    }
}
