import Foundation

/// Graph events as iCalendar (RFC 5545) and Graph contacts as vCard 3.0 (RFC 2426): what a
/// restore hands to Outlook, Thunderbird or any calendar and address book. Only what the Graph
/// JSON holds is written; properties Graph leaves out are left out. The Graph JSON itself is
/// always kept in the snapshot and restorable as is (`--format files`).
enum ICalendar {
    static let header = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Vaultline//Graph restore//EN\r\nCALSCALE:GREGORIAN\r\n"
    static let footer = "END:VCALENDAR\r\n"

    /// One `VCALENDAR` holding `events` (Graph event JSON).
    static func calendar(_ events: [JSONValue]) -> String {
        header + events.map { event($0) }.joined() + footer
    }

    /// One `VEVENT`. `series`: for an exception, its master's UID (the exception is written
    /// with it and a `RECURRENCE-ID`, its original start); `exdates`: a master's cancelled
    /// occurrences (original starts).
    static func event(_ e: JSONValue, series uid: String? = nil, exdates: [Date] = []) -> String {
        var lines: [String] = ["BEGIN:VEVENT"]
        func add(_ name: String, _ value: String?) {
            if let value, !value.isEmpty { lines.append(name + ":" + escape(value)) }
        }
        add("UID", uid ?? e["iCalUId"]?.string ?? e["id"]?.string)
        if uid != nil, let original = e["originalStart"]?.string.flatMap({ GraphDate.parse($0) }) {
            lines.append("RECURRENCE-ID:" + basic(original))
        }
        lines.append("DTSTAMP:" + (utc(e["lastModifiedDateTime"]?.string) ?? utc(e["createdDateTime"]?.string) ?? "19700101T000000Z"))
        let allDay = e["isAllDay"]?.bool ?? false
        if let start = time(e["start"], allDay: allDay) { lines.append("DTSTART" + start) }
        if let end = time(e["end"], allDay: allDay) { lines.append("DTEND" + end) }
        add("SUMMARY", e["subject"]?.string)
        add("LOCATION", e["location"]?["displayName"]?.string)
        let body = e["body"]
        if body?["contentType"]?.string?.lowercased() == "html", let html = body?["content"]?.string, !html.isEmpty {
            add("DESCRIPTION", e["bodyPreview"]?.string)
            lines.append("X-ALT-DESC;FMTTYPE=text/html:" + escape(html))
        } else {
            add("DESCRIPTION", body?["content"]?.string ?? e["bodyPreview"]?.string)
        }
        if let organizer = e["organizer"]?["emailAddress"], let address = organizer["address"]?.string, !address.isEmpty {
            lines.append("ORGANIZER" + commonName(organizer["name"]?.string) + ":mailto:" + address)
        }
        for a in e["attendees"]?.array ?? [] {
            guard let address = a["emailAddress"]?["address"]?.string, !address.isEmpty else { continue }
            let role = switch a["type"]?.string { case "optional": "OPT-PARTICIPANT"; case "resource": "NON-PARTICIPANT"; default: "REQ-PARTICIPANT" }
            let status = switch a["status"]?["response"]?.string {
            case "accepted": "ACCEPTED"; case "declined": "DECLINED"; case "tentativelyAccepted": "TENTATIVE"; default: "NEEDS-ACTION"
            }
            lines.append("ATTENDEE" + commonName(a["emailAddress"]?["name"]?.string) + ";ROLE=\(role);PARTSTAT=\(status):mailto:" + address)
        }
        let categories = (e["categories"]?.array ?? []).compactMap(\.string).map(escape)
        if !categories.isEmpty { lines.append("CATEGORIES:" + categories.joined(separator: ",")) }
        if e["isCancelled"]?.bool == true { lines.append("STATUS:CANCELLED") }
        if e["showAs"]?.string == "free" { lines.append("TRANSP:TRANSPARENT") }
        if let s = e["sensitivity"]?.string, s == "private" || s == "confidential" { lines.append("CLASS:" + s.uppercased()) }
        if let created = utc(e["createdDateTime"]?.string) { lines.append("CREATED:" + created) }
        if let modified = utc(e["lastModifiedDateTime"]?.string) { lines.append("LAST-MODIFIED:" + modified) }
        if let rule = recurrence(e["recurrence"]) {
            lines.append("RRULE:" + rule)
            if !exdates.isEmpty { lines.append("EXDATE:" + exdates.map(basic).joined(separator: ",")) }
        }
        lines.append("END:VEVENT")
        return lines.map(fold).joined()
    }

    /// `;VALUE=DATE:20260104`, `:20260104T050000Z` (UTC) or `;TZID=<zone>:20260104T050000`,
    /// from Graph's `{"dateTime": "2026-01-04T05:00:00.0000000", "timeZone": "UTC"}`.
    static func time(_ t: JSONValue?, allDay: Bool) -> String? {
        guard let dateTime = t?["dateTime"]?.string, dateTime.count >= 19 else { return nil }
        let digits = dateTime.prefix(19).filter { $0 != "-" && $0 != ":" }  // 20260104T050000
        guard digits.count == 15 else { return nil }
        if allDay { return ";VALUE=DATE:" + digits.prefix(8) }
        let zone = t?["timeZone"]?.string ?? "UTC"
        if zone == "UTC" || zone.isEmpty { return ":" + digits + "Z" }
        return ";TZID=" + paramValue(zone) + ":" + digits
    }

    /// An instant as iCalendar UTC (`20260104T050000Z`).
    static func basic(_ date: Date) -> String {
        String(GraphDate.format(date).prefix(19).filter { $0 != "-" && $0 != ":" }) + "Z"
    }

    /// An ISO 8601 instant as iCalendar UTC (`20260104T050000Z`).
    static func utc(_ s: String?) -> String? {
        guard let date = M365Backup.date(s) else { return nil }
        let c = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC") ?? .current, from: date)
        guard let y = c.year, let mo = c.month, let d = c.day, let h = c.hour, let mi = c.minute, let se = c.second else { return nil }
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", y, mo, d, h, mi, se)
    }

    /// Graph's `patternedRecurrence` as an RRULE, for the patterns RFC 5545 says the same way.
    static func recurrence(_ r: JSONValue?) -> String? {
        guard let pattern = r?["pattern"], let type = pattern["type"]?.string else { return nil }
        var parts: [String] = []
        let days = (pattern["daysOfWeek"]?.array ?? []).compactMap { $0.string.flatMap { weekday[$0.lowercased()] } }
        switch type {
        case "daily": parts.append("FREQ=DAILY")
        case "weekly":
            parts.append("FREQ=WEEKLY")
            if !days.isEmpty { parts.append("BYDAY=" + days.joined(separator: ",")) }
        case "absoluteMonthly":
            parts.append("FREQ=MONTHLY")
            if let d = pattern["dayOfMonth"]?.int64, d > 0 { parts.append("BYMONTHDAY=\(d)") }
        case "relativeMonthly", "relativeYearly":
            parts.append(type == "relativeMonthly" ? "FREQ=MONTHLY" : "FREQ=YEARLY")
            if type == "relativeYearly", let m = pattern["month"]?.int64, m > 0 { parts.append("BYMONTH=\(m)") }
            let ordinal = switch pattern["index"]?.string { case "second": "2"; case "third": "3"; case "fourth": "4"; case "last": "-1"; default: "1" }
            if !days.isEmpty { parts.append("BYDAY=" + days.map { ordinal + $0 }.joined(separator: ",")) }
        case "absoluteYearly":
            parts.append("FREQ=YEARLY")
            if let m = pattern["month"]?.int64, m > 0 { parts.append("BYMONTH=\(m)") }
            if let d = pattern["dayOfMonth"]?.int64, d > 0 { parts.append("BYMONTHDAY=\(d)") }
        default: return nil
        }
        if let interval = pattern["interval"]?.int64, interval > 1 { parts.append("INTERVAL=\(interval)") }
        let range = r?["range"]
        switch range?["type"]?.string {
        case "endDate":
            if let end = range?["endDate"]?.string, end.count >= 10 { parts.append("UNTIL=" + end.prefix(10).filter { $0 != "-" }) }
        case "numbered":
            if let n = range?["numberOfOccurrences"]?.int64, n > 0 { parts.append("COUNT=\(n)") }
        default: break
        }
        return parts.joined(separator: ";")
    }

    static let weekday = ["sunday": "SU", "monday": "MO", "tuesday": "TU", "wednesday": "WE", "thursday": "TH", "friday": "FR", "saturday": "SA"]

    static func commonName(_ name: String?) -> String {
        guard let name, !name.isEmpty else { return "" }
        return ";CN=" + paramValue(name)
    }

    /// A parameter value: quoted when it holds `:`, `;` or `,`; `"` and controls dropped.
    static func paramValue(_ s: String) -> String {
        let clean = String(s.unicodeScalars.filter { $0 != "\"" && $0.value >= 0x20 && $0.value != 0x7f })
        return clean.contains(where: { ":;,".contains($0) }) ? "\"" + clean + "\"" : clean
    }

    /// TEXT escaping (RFC 5545 3.3.11, the same in vCard 3.0): `\`, `;`, `,` and newlines.
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        var previousCR = false
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case ";": out += "\\;"
            case ",": out += "\\,"
            case "\r": out += "\\n"
            case "\n": if !previousCR { out += "\\n" }
            default:
                if c.value < 0x20 && c != "\t" || c.value == 0x7f { break }
                out.unicodeScalars.append(c)
            }
            previousCR = c == "\r"
        }
        return out
    }

    /// A content line folded at 75 octets (never inside a UTF-8 sequence), ended by CRLF.
    static func fold(_ line: String) -> String {
        var out = ""
        var octets = 0
        for c in line.unicodeScalars {
            let n = String(c).utf8.count
            if octets + n > 75 {
                out += "\r\n "
                octets = 1
            }
            out.unicodeScalars.append(c)
            octets += n
        }
        return out + "\r\n"
    }
}

/// Graph contacts as vCard 3.0 (RFC 2426).
enum VCard {
    static func card(_ c: JSONValue) -> String {
        var lines = ["BEGIN:VCARD", "VERSION:3.0"]
        func esc(_ s: String?) -> String { ICalendar.escape(s ?? "") }
        let display = c["displayName"]?.string ?? [c["givenName"]?.string, c["surname"]?.string].compactMap { $0 }.joined(separator: " ")
        lines.append("FN:" + esc(display.isEmpty ? (c["emailAddresses"]?.array?.first?["address"]?.string ?? "") : display))
        lines.append("N:" + [c["surname"], c["givenName"], c["middleName"], c["title"], c["generation"]].map { esc($0?.string) }.joined(separator: ";"))
        if let v = c["nickName"]?.string, !v.isEmpty { lines.append("NICKNAME:" + esc(v)) }
        for e in c["emailAddresses"]?.array ?? [] {
            if let a = e["address"]?.string, !a.isEmpty { lines.append("EMAIL;TYPE=INTERNET:" + esc(a)) }
        }
        if let v = c["mobilePhone"]?.string, !v.isEmpty { lines.append("TEL;TYPE=CELL:" + esc(v)) }
        for p in c["businessPhones"]?.array ?? [] { if let v = p.string, !v.isEmpty { lines.append("TEL;TYPE=WORK:" + esc(v)) } }
        for p in c["homePhones"]?.array ?? [] { if let v = p.string, !v.isEmpty { lines.append("TEL;TYPE=HOME:" + esc(v)) } }
        let company = c["companyName"]?.string ?? "", department = c["department"]?.string ?? ""
        if !company.isEmpty || !department.isEmpty { lines.append("ORG:" + esc(company) + (department.isEmpty ? "" : ";" + esc(department))) }
        if let v = c["jobTitle"]?.string, !v.isEmpty { lines.append("TITLE:" + esc(v)) }
        for (key, type) in [("businessAddress", "WORK"), ("homeAddress", "HOME"), ("otherAddress", "POSTAL")] {
            guard let a = c[key], a.object?.isEmpty == false else { continue }
            let fields = ["street", "city", "state", "postalCode", "countryOrRegion"].map { esc(a[$0]?.string) }
            guard fields.contains(where: { !$0.isEmpty }) else { continue }
            lines.append("ADR;TYPE=\(type):;;" + fields.joined(separator: ";"))
        }
        if let b = c["birthday"]?.string, b.count >= 10 { lines.append("BDAY:" + b.prefix(10)) }
        if let v = c["personalNotes"]?.string, !v.isEmpty { lines.append("NOTE:" + esc(v)) }
        let categories = (c["categories"]?.array ?? []).compactMap(\.string).map(ICalendar.escape)
        if !categories.isEmpty { lines.append("CATEGORIES:" + categories.joined(separator: ",")) }
        if let id = c["id"]?.string { lines.append("UID:" + esc(id)) }
        if let rev = ICalendar.utc(c["lastModifiedDateTime"]?.string) { lines.append("REV:" + rev) }
        lines.append("END:VCARD")
        return lines.map(ICalendar.fold).joined()
    }
}
