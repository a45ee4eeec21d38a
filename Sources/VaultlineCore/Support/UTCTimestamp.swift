import Foundation

/// Timestamps in the three textual forms the repository and S3 use, done by calendar
/// arithmetic on UTC alone. Foundation's `ISO8601DateFormatter`, `DateFormatter` and
/// time-zone-aware `Calendar` load ICU and its data, 3 to 7 MiB resident in every process that
/// touches them (measured: a program that formats one date goes from 16.4 to 23.1 MiB), for
/// formats that need no locale.
///
/// - RFC 3339 (`2026-12-02T07:40:14.123Z`): what every stored JSON date is written as
///   (docs/FORMAT.md), and S3's Object Lock dates.
/// - SigV4's basic form (`20261202T074014Z`).
/// - HTTP's IMF-fixdate (`Wed, 02 Dec 2026 07:40:14 GMT`), S3's `Last-Modified`.
public enum UTCTimestamp {
    /// RFC 3339 in UTC with `Z`; with `milliseconds`, three digits of fraction, truncated (as
    /// Foundation's formatter wrote them, so stored dates read back the same).
    public static func rfc3339(_ date: Date, milliseconds: Bool = true) -> String {
        let (whole, millis) = split(date)
        let civil = Civil(unixSeconds: whole)
        var text = "\(pad(civil.year, 4))-\(pad(civil.month, 2))-\(pad(civil.day, 2))T\(pad(civil.hour, 2)):\(pad(civil.minute, 2)):\(pad(civil.second, 2))"
        if milliseconds { text += ".\(pad(millis, 3))" }
        return text + "Z"
    }

    /// Parses RFC 3339's date-time: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of any length,
    /// then `Z` or `±HH:MM` (`t`/`z` and a space for `T` accepted, as the RFC allows). Nil for
    /// anything else, including out-of-range fields (month 13, second 61, 31 February).
    public static func parseRFC3339(_ text: String) -> Date? {
        var reader = Reader(Array(text.utf8))
        guard let year = reader.digits(4), reader.take("-"), let month = reader.digits(2), reader.take("-"), let day = reader.digits(2),
              reader.takeAny(["T", "t", " "]),
              let hour = reader.digits(2), reader.take(":"), let minute = reader.digits(2), reader.take(":"), let second = reader.digits(2)
        else { return nil }
        var fraction = 0.0
        if reader.take(".") {
            var scale = 0.1
            var count = 0
            while let digit = reader.digit() {
                fraction += Double(digit) * scale
                scale /= 10
                count += 1
            }
            guard count > 0 else { return nil }
        }
        var offset = 0
        if !reader.takeAny(["Z", "z"]) {
            guard let sign = reader.next(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-"),
                  let hours = reader.digits(2), reader.take(":"), let minutes = reader.digits(2), hours < 24, minutes < 60 else { return nil }
            offset = (hours * 60 + minutes) * 60 * (sign == UInt8(ascii: "-") ? -1 : 1)
        }
        guard reader.atEnd, let civil = Civil(year: year, month: month, day: day, hour: hour, minute: minute, second: second) else { return nil }
        return Date(timeIntervalSince1970: Double(civil.unixSeconds - Int64(offset)) + fraction)
    }

    /// SigV4's `YYYYMMDDTHHMMSSZ`, to the second.
    public static func basic(_ date: Date) -> String {
        let civil = Civil(unixSeconds: split(date).seconds)
        return "\(pad(civil.year, 4))\(pad(civil.month, 2))\(pad(civil.day, 2))T\(pad(civil.hour, 2))\(pad(civil.minute, 2))\(pad(civil.second, 2))Z"
    }

    static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// HTTP's IMF-fixdate (RFC 9110 section 5.6.7), to the second.
    public static func httpDate(_ date: Date) -> String {
        let seconds = split(date).seconds
        let civil = Civil(unixSeconds: seconds)
        let weekday = weekdays[Int(((seconds.floorDivided(by: 86400) % 7) + 11) % 7)]  // 1970-01-01 was a Thursday
        return "\(weekday), \(pad(civil.day, 2)) \(months[civil.month - 1]) \(pad(civil.year, 4)) \(pad(civil.hour, 2)):\(pad(civil.minute, 2)):\(pad(civil.second, 2)) GMT"
    }

    /// Parses an IMF-fixdate. The weekday is checked for form, not against the date (senders
    /// get it wrong and nothing depends on it); the obsolete RFC 850 and asctime forms are not
    /// accepted (S3 never sends them).
    public static func parseHTTPDate(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count == 29 else { return nil }
        var reader = Reader(bytes)
        guard let weekday = reader.letters(3), weekdays.contains(weekday), reader.take(","), reader.take(" "),
              let day = reader.digits(2), reader.take(" "), let monthName = reader.letters(3), let month = months.firstIndex(of: monthName),
              reader.take(" "), let year = reader.digits(4), reader.take(" "),
              let hour = reader.digits(2), reader.take(":"), let minute = reader.digits(2), reader.take(":"), let second = reader.digits(2),
              reader.take(" "), reader.letters(3) == "GMT", reader.atEnd,
              let civil = Civil(year: year, month: month + 1, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(civil.unixSeconds))
    }

    /// Whole seconds since 1970 (floored, so times before it stay right) and the milliseconds.
    static func split(_ date: Date) -> (seconds: Int64, millis: Int) {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite, abs(interval) < 253_402_300_800 else { return (interval < 0 ? -62_135_596_800 : 253_402_300_799, 0) }
        let seconds = interval.rounded(.down)
        // An allowance of a few units in the last place (at least a microsecond): `.817` parsed
        // back is 0.81699999…, which must format as .817 again (a Double resolves 0.24 µs near
        // 2026, 1 µs near 1724).
        let allowance = max(0.001, interval.ulp * 4000)
        return (Int64(seconds), min(999, Int((interval - seconds) * 1000 + allowance)))
    }

    static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// A UTC date and time of the proleptic Gregorian calendar, converted to and from seconds since
/// 1970 with Howard Hinnant's days-from-civil algorithm (exact for years 0 to 9999).
struct Civil {
    var year, month, day, hour, minute, second: Int

    /// Nil when a field is out of range (leap seconds, 60, are not representable in a Date).
    init?(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        guard (1...12).contains(month), day >= 1, day <= Self.daysIn(month: month, year: year),
              (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second) else { return nil }
        (self.year, self.month, self.day, self.hour, self.minute, self.second) = (year, month, day, hour, minute, second)
    }

    init(unixSeconds: Int64) {
        let days = unixSeconds.floorDivided(by: 86400)
        let secondsOfDay = Int(unixSeconds - days * 86400)
        let shifted = days + 719_468
        let era = shifted.floorDivided(by: 146_097)
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        year = Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0)
        hour = secondsOfDay / 3600
        minute = secondsOfDay / 60 % 60
        second = secondsOfDay % 60
    }

    var unixSeconds: Int64 {
        let shiftedYear = Int64(month <= 2 ? year - 1 : year)
        let era = shiftedYear.floorDivided(by: 400)
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = Int64((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1)
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return days * 86400 + Int64(hour * 3600 + minute * 60 + second)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

extension Int64 {
    /// Division rounding toward negative infinity.
    func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}

/// A cursor over ASCII bytes for the parsers above.
private struct Reader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { position == bytes.count }

    mutating func next() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func take(_ character: Unicode.Scalar) -> Bool { takeAny([character]) }

    mutating func takeAny(_ characters: [Unicode.Scalar]) -> Bool {
        guard position < bytes.count, characters.contains(where: { UInt8(ascii: $0) == bytes[position] }) else { return false }
        position += 1
        return true
    }

    mutating func digit() -> Int? {
        guard position < bytes.count, (48...57).contains(bytes[position]) else { return nil }
        defer { position += 1 }
        return Int(bytes[position] - 48)
    }

    mutating func digits(_ count: Int) -> Int? {
        var value = 0
        for _ in 0..<count {
            guard let digit = digit() else { return nil }
            value = value * 10 + digit
        }
        return value
    }

    mutating func letters(_ count: Int) -> String? {
        guard position + count <= bytes.count else { return nil }
        let slice = bytes[position..<position + count]
        guard slice.allSatisfy({ (65...90).contains($0) || (97...122).contains($0) }) else { return nil }
        position += count
        return String(decoding: slice, as: UTF8.self)
    }
}
