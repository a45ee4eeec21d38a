import Foundation

/// The dates a Graph `patternedRecurrence` gives, for the patterns whose expansion needs no
/// calendar rules beyond counting days: `daily` and `weekly` (Graph's `firstDayOfWeek` decides
/// where an active week begins). Used to name the cancelled occurrences of a series (those the
/// pattern gives and the backup does not hold) as `EXDATE`s; monthly and yearly patterns are
/// not expanded (nil), and their cancellations are not written.
enum GraphRecurrence {
    static let weekdays = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    /// At most this many dates, and none past 2100 (the backup's calendar window).
    static let limit = 5_000
    static let horizon = Date(timeIntervalSince1970: 4_102_444_800)

    static func occurrences(_ recurrence: JSONValue?, start: Date) -> [Date]? {
        guard let pattern = recurrence?["pattern"], let range = recurrence?["range"] else { return nil }
        let interval = max(1, Int(pattern["interval"]?.int64 ?? 1))
        var days: Set<Int>?
        switch pattern["type"]?.string {
        case "daily": days = nil
        case "weekly":
            days = Set((pattern["daysOfWeek"]?.array ?? []).compactMap { $0.string.flatMap { weekdays.firstIndex(of: $0.lowercased()) } })
            if days?.isEmpty != false { return nil }
        default: return nil
        }
        var count = limit
        var last = horizon
        switch range["type"]?.string {
        case "numbered": count = min(limit, max(0, Int(range["numberOfOccurrences"]?.int64 ?? 0)))
        case "endDate":
            guard let end = range["endDate"]?.string.flatMap({ GraphDate.parse($0 + "T23:59:59Z") }) else { return nil }
            last = min(end, horizon)
        default: break
        }
        let firstDay = weekdays.firstIndex(of: pattern["firstDayOfWeek"]?.string?.lowercased() ?? "sunday") ?? 0
        let startWeekday = Int((start.timeIntervalSince1970 / 86_400).rounded(.down) + 4) % 7  // 1970-01-01 was a Thursday
        // Days from the start of the start's week (as the pattern counts weeks).
        let lead = (startWeekday - firstDay + 7) % 7
        var out: [Date] = []
        var day = 0
        while out.count < count {
            let date = start.addingTimeInterval(Double(day) * 86_400)
            if date > last { break }
            if let days {
                if days.contains((startWeekday + day) % 7), ((lead + day) / 7) % interval == 0 { out.append(date) }
            } else if day % interval == 0 {
                out.append(date)
            }
            day += 1
        }
        return out
    }
}
