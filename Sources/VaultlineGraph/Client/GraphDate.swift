import Foundation

/// Graph's ISO 8601 times, parsed by hand: a formatter per call took 18% of a mail backup's CPU.
public enum GraphDate {
    /// Parses `2026-01-04T05:00:00Z`, with or without fractional seconds, with `Z`, an offset
    /// (`+02:00`, `-0530`) or none (calendar times, which Graph gives in the zone named beside
    /// them; taken as UTC here). A space may stand for the `T`. Nil for anything else, and for a
    /// date that does not exist (month 13, February 30, hour 24, an offset beyond ±14 h).
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func num(_ from: Int, _ n: Int) -> Int? {
            guard from + n <= b.count else { return nil }
            var v = 0
            for i in from..<(from + n) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count >= 19, b[4] == 45, b[7] == 45, b[10] == 84 || b[10] == 32, b[13] == 58, b[16] == 58,
              let year = num(0, 4), let month = num(5, 2), let day = num(8, 2),
              let hour = num(11, 2), let minute = num(14, 2), let second = num(17, 2),
              hour < 24, minute < 60, second < 60 else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == 46 {
            var scale = 0.1
            i += 1
            let digits = i
            while i < b.count, b[i] >= 48 && b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > digits else { return nil }
        }
        var offset = 0
        if i < b.count {
            switch b[i] {
            case 90, 122:  // Z, z
                i += 1
            case 43, 45:  // + -
                guard let oh = num(i + 1, 2) else { return nil }
                var om = 0
                var end = i + 3
                if end < b.count, b[end] == 58 {
                    guard let m = num(end + 1, 2) else { return nil }
                    om = m
                    end += 3
                } else if let m = num(end, 2) {
                    om = m
                    end += 2
                }
                guard oh <= 14, om < 60 else { return nil }
                offset = (b[i] == 43 ? 1 : -1) * (oh * 3600 + om * 60)
                i = end
            default:
                return nil
            }
        }
        guard i == b.count else { return nil }
        return make(year: year, month: month, day: day, seconds: hour * 3600 + minute * 60 + second - offset)
            .map { $0.addingTimeInterval(fraction) }
    }

    /// Midnight UTC of a civil date plus `seconds`; nil for a date that does not exist.
    static func make(year: Int, month: Int, day: Int, seconds: Int) -> Date? {
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Date(timeIntervalSince1970: Double(days * 86_400 + seconds))
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// `2026-01-04T05:00:00Z`: what Graph takes in JSON bodies.
    public static func format(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        var days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let rest = seconds - days * 86_400
        // Civil date from days (Hinnant).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let doe = days - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(year)-\(two(month))-\(two(day))T\(two(rest / 3600)):\(two(rest / 60 % 60)):\(two(rest % 60))Z"
    }
}
