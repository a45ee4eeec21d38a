import Foundation
import VaultlineCore

/// When the service may prune and scrub (`--maintenance-window`): a daily span of wall-clock
/// time in a time zone, `HH:MM-HH:MM` (it may cross midnight: `22:00-04:00`), or `always`, or
/// `never`. The start is inside the window, the end is not; a span whose ends are equal is empty.
public struct MaintenanceWindow: Sendable, Equatable, CustomStringConvertible {
    /// Minutes after midnight; nil for `always` and `never`.
    public let startMinute: Int?
    public let endMinute: Int?
    public let isAlways: Bool
    public let timeZone: TimeZone

    public static let always = MaintenanceWindow(start: nil, end: nil, always: true, timeZone: .current)
    public static let never = MaintenanceWindow(start: nil, end: nil, always: false, timeZone: .current)

    init(start: Int?, end: Int?, always: Bool, timeZone: TimeZone) {
        startMinute = start
        endMinute = end
        isAlways = always
        self.timeZone = timeZone
    }

    /// Parses `01:00-05:00`, `22:30-04:00`, `always` or `never`; times are in `timeZone`.
    public init(parsing text: String, timeZone: TimeZone = .current) throws {
        switch text.lowercased() {
        case "always": self.init(start: nil, end: nil, always: true, timeZone: timeZone)
        case "never", "off": self.init(start: nil, end: nil, always: false, timeZone: timeZone)
        default:
            let ends = text.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count == 2, let start = Self.minute(ends[0]), let end = Self.minute(ends[1]) else {
                throw VaultlineError(.invalidArgument, "a maintenance window looks like 01:00-05:00 (HH:MM-HH:MM), always or never, not \(text)")
            }
            self.init(start: start, end: end, always: false, timeZone: timeZone)
        }
    }

    /// `HH:MM` with HH 00…24 and MM 00…59 (24:00 is the end of the day) as minutes after midnight.
    static func minute(_ text: Substring) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
              let hour = Int(parts[0]), let minute = Int(parts[1]),
              (0...24).contains(hour), (0...59).contains(minute), hour * 60 + minute <= 24 * 60 else { return nil }
        return hour * 60 + minute
    }

    /// Whether `date` falls inside the window.
    public func contains(_ date: Date) -> Bool {
        guard let start = startMinute, let end = endMinute else { return isAlways }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        let now = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        return start <= end ? (start <= now && now < end) : (now >= start || now < end)
    }

    public var description: String {
        guard let start = startMinute, let end = endMinute else { return isAlways ? "always" : "never" }
        func hhmm(_ m: Int) -> String { String(format: "%02d:%02d", m / 60, m % 60) }
        return "\(hhmm(start))-\(hhmm(end)) \(timeZone.identifier)"
    }
}
