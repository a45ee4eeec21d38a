import Foundation

/// A recurring series as the simulator keeps it: a master (the stored event) whose pattern
/// gives the occurrences' original starts, plus the occurrences a client changed (exceptions)
/// or deleted (cancellations), by their index in the series.
///
/// What Graph documents, and the simulator does:
/// - `GET /events` and `/calendars/{id}/events` list single instances and series masters
///   (`"type": "seriesMaster"` with its `recurrence`), never occurrences.
/// - `calendarView/delta` gives a series master and, on the same page, its occurrences as bare
///   stubs (`id`, `seriesMasterId`, `type`, `start`, `end` only; docs-contrib #34) and its
///   exceptions in full; a cancelled occurrence is simply absent, with no `@removed`
///   (docs #4501).
/// - `GET /events/{master}/instances?startDateTime&endDateTime` gives the occurrences and
///   exceptions in the window, in full, with `originalStart`; PATCH on one makes it an
///   exception, DELETE cancels it.
///
/// Patterns understood: `daily` and `weekly` (with `daysOfWeek`) at any interval, ranges
/// `numbered`, `endDate` and `noEnd` (expanded up to 2100, at most 2,000 occurrences).
/// Times are taken as UTC whatever the time zone named.
struct Recurrence: Sendable {
    /// Days between occurrences (daily) or weeks between active weeks (weekly).
    var interval: Int
    /// Weekly: the weekdays (0 = Sunday); nil for daily.
    var weekdays: Set<Int>?
    var count: Int?
    var until: Date?

    static let horizon = Date(timeIntervalSince1970: 4_102_444_800)  // 2100-01-01
    static let maxOccurrences = 2_000

    /// Graph's `patternedRecurrence`; nil when absent or not understood.
    init?(graph: Any?) {
        guard let r = graph as? [String: Any], let pattern = r["pattern"] as? [String: Any], let range = r["range"] as? [String: Any] else { return nil }
        interval = max(1, (pattern["interval"] as? NSNumber)?.intValue ?? 1)
        switch pattern["type"] as? String {
        case "daily": weekdays = nil
        case "weekly":
            let names = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
            weekdays = Set((pattern["daysOfWeek"] as? [String] ?? []).compactMap { names.firstIndex(of: $0.lowercased()) })
            if weekdays?.isEmpty != false { return nil }
        default: return nil
        }
        switch range["type"] as? String {
        case "numbered": count = (range["numberOfOccurrences"] as? NSNumber)?.intValue
        case "endDate": until = (range["endDate"] as? String).flatMap { Tenant.parseISO($0 + "T23:59:59Z") }
        default: break
        }
    }

    init(weeklyOn weekday: Int, count: Int) {
        interval = 1
        weekdays = [weekday]
        self.count = count
    }

    /// The original starts of the series that begins at `start`.
    func occurrences(from start: Date) -> [Date] {
        let day = 86_400.0
        let startWeekday = Int(Tenant.utc(start).tm_wday)
        let limit = min(count ?? Self.maxOccurrences, Self.maxOccurrences)
        let end = min(until ?? Self.horizon, Self.horizon)
        var out: [Date] = []
        var offset = 0
        while out.count < limit {
            let candidate = start.addingTimeInterval(Double(offset) * day)
            if candidate > end { break }
            let include: Bool
            if let weekdays {
                let weekday = (startWeekday + offset) % 7
                let week = (startWeekday + offset) / 7
                include = weekdays.contains(weekday) && week % interval == 0
            } else {
                include = offset % interval == 0
            }
            if include { out.append(candidate) }
            offset += 1
        }
        return out
    }

    /// As Graph writes it.
    func graphJSON(start: Date) -> [String: Any] {
        let names = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
        let startDate = String(Tenant.iso(start).prefix(10))
        var range: [String: Any] = ["startDate": startDate, "recurrenceTimeZone": "UTC"]
        if let count {
            range["type"] = "numbered"
            range["numberOfOccurrences"] = count
        } else if let until {
            range["type"] = "endDate"
            range["endDate"] = String(Tenant.iso(until).prefix(10))
        } else {
            range["type"] = "noEnd"
        }
        var pattern: [String: Any] = ["type": weekdays == nil ? "daily" : "weekly", "interval": interval, "firstDayOfWeek": "sunday"]
        if let weekdays { pattern["daysOfWeek"] = weekdays.sorted().map { names[$0] } }
        return ["pattern": pattern, "range": range]
    }
}

extension Tenant {
    /// The id of occurrence `index` of series `master`.
    static func instanceID(master: String, index: Int) -> String { master + "_OCC" + String(index) }

    static func splitInstanceID(_ id: String) -> (master: String, index: Int)? {
        guard let mark = id.range(of: "_OCC", options: .backwards), let index = Int(id[mark.upperBound...]), index >= 0 else { return nil }
        return (String(id[..<mark.lowerBound]), index)
    }

    /// An event time as clients send it (`{"dateTime": "2026-01-05T10:00:00.0000000", "timeZone": "UTC"}`).
    static func eventTime(_ value: Any?) -> Date? {
        guard let o = value as? [String: Any], var text = o["dateTime"] as? String else { return nil }
        if !text.hasSuffix("Z"), !text.dropFirst(19).contains("+"), !text.dropFirst(19).contains("-") { text += "Z" }
        return parseISO(text)
    }

    static func eventTimeJSON(_ d: Date) -> [String: Any] {
        ["dateTime": String(iso(d).dropLast()) + ".0000000", "timeZone": "UTC"]
    }

    /// Occurrence `index` of a series, in full (`/instances`, GET by id) or as the stub the
    /// calendar view's delta gives; nil when cancelled or out of the series.
    func instanceJSON(master: String, _ e: Event, index: Int, stub: Bool = false) -> [String: Any]? {
        guard let recurrence = e.recurrence, !e.cancelled.contains(index) else { return nil }
        let starts = recurrence.occurrences(from: e.start)
        guard index < starts.count else { return nil }
        let id = Self.instanceID(master: master, index: index)
        let original = starts[index]
        let exception = e.exceptions[index].flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] }
        let start = Self.eventTime(exception?["start"]) ?? original
        let end = Self.eventTime(exception?["end"]) ?? start.addingTimeInterval(Double(e.minutes) * 60)
        let changeKey = Self.changeKey(id, "\(e.version).\(exception?.count ?? 0)")
        var o: [String: Any] = ["@odata.type": "#microsoft.graph.event", "@odata.etag": "W/\"\(changeKey)\"", "id": id, "seriesMasterId": master,
                                "type": exception == nil ? "occurrence" : "exception",
                                "start": Self.eventTimeJSON(start), "end": Self.eventTimeJSON(end)]
        if stub, exception == nil { return o }
        var full = eventJSON(id: master, e)
        for key in ["recurrence", "id", "@odata.etag", "transactionId"] { full[key] = nil }
        full.merge(o) { $1 }
        if let exception { full.merge(exception.filter { $0.key != "start" && $0.key != "end" }) { $1 } }
        full["changeKey"] = changeKey
        full["originalStart"] = Self.iso(original)
        full["originalStartTimeZone"] = "UTC"
        o = full
        return o
    }

    /// Every occurrence and exception of a series that is not cancelled.
    func instances(master: String, _ e: Event, stubs: Bool = false) -> [[String: Any]] {
        guard let recurrence = e.recurrence else { return [] }
        return recurrence.occurrences(from: e.start).indices.compactMap { instanceJSON(master: master, e, index: $0, stub: stubs) }
    }

    /// Where a user's event `id` lives: its calendar's collection key.
    func eventKey(user: User, _ id: String) -> String? {
        let keys = [Self.eventsKey(user.id)] + state.withLock { $0.otherCalendars[user.id] ?? [] }.map { Self.calendarKey(user.id, $0.id) }
        return keys.first { entry($0, id).map { $0.deleted == nil } ?? false }
    }

    /// Applies `change` to the series holding occurrence `id`; the series counts as changed
    /// (the calendar view's delta gives it again). Returns the master's id and event after.
    func updateSeries(user: User, occurrence id: String, _ change: (inout Event, Int) -> Bool) -> (String, Event, Int)? {
        guard let (master, index) = Self.splitInstanceID(id), let key = eventKey(user: user, master) else { return nil }
        return state.withLock { s in
            guard case .event(var e)? = s.collections[key]?.entries[master]?.payload, let recurrence = e.recurrence,
                  index < recurrence.occurrences(from: e.start).count, !e.cancelled.contains(index), change(&e, index) else { return nil }
            e.version += 1
            s.seq += 1
            s.collections[key]?.upsert(master, seq: s.seq, .event(e))
            return (master, e, index)
        }
    }

    /// Each series of a user's calendar (the default one, or `calendar`) by its subject: its
    /// occurrences as `type start end subject` lines, in order. What a restore must give back.
    public func seriesShapes(upn: String, calendar: String? = nil) -> [String: [String]] {
        guard let u = user(upn), let c = collection(calendar.map { Self.calendarKey(u.id, $0) } ?? Self.eventsKey(u.id)) else { return [:] }
        var out: [String: [String]] = [:]
        for e in c.live {
            guard case .event(let x) = e.payload, x.recurrence != nil else { continue }
            out[x.subject] = instances(master: e.id, x).map { o in
                let start = Tenant.eventTime(o["start"]).map(Tenant.iso) ?? "", end = Tenant.eventTime(o["end"]).map(Tenant.iso) ?? ""
                return [o["type"] as? String ?? "", start, end, o["subject"] as? String ?? ""].joined(separator: " ")
            }
        }
        return out
    }
}
