import Foundation
import Testing
@testable import VaultlineCore

/// The ICU-free timestamp codec against Foundation's formatters (which it replaces, so dates
/// stored by earlier versions read back the same) and against malformed text.
struct UTCTimestampTests {
    static func foundationRFC3339(_ date: Date, fractional: Bool) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = fractional ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        return formatter.string(from: date)
    }

    @Test func formatsAsFoundationDidAcrossFourCenturies() {
        var generator = SplitMix64(seed: 7)
        // From 1601 to 2399: leap years, the 1900/2000/2100 century rules, dates before 1970.
        for _ in 0..<5000 {
            let seconds = -11_644_473_600 + Double(generator.next() % 25_200_000_000) + Double(generator.next() % 1000) / 1000
            let date = Date(timeIntervalSince1970: seconds)
            #expect(UTCTimestamp.rfc3339(date, milliseconds: false) == Self.foundationRFC3339(date, fractional: false))
            let parsed = UTCTimestamp.parseRFC3339(UTCTimestamp.rfc3339(date))
            #expect(parsed.map { abs($0.timeIntervalSince1970 - seconds) < 0.001 } == true, "\(seconds) \(UTCTimestamp.rfc3339(date)) \(parsed?.timeIntervalSince1970 ?? 0)")
        }
    }

    @Test func readsWhatFoundationWrote() throws {
        var generator = SplitMix64(seed: 8)
        for _ in 0..<2000 {
            let date = Date(timeIntervalSince1970: Double(generator.next() % 4_000_000_000) + Double(generator.next() % 1000) / 1000)
            let written = Self.foundationRFC3339(date, fractional: true)
            let mine = try #require(UTCTimestamp.parseRFC3339(written))
            let theirs = try #require(ISO8601DateFormatter.fractional.date(from: written))
            #expect(abs(mine.timeIntervalSince(theirs)) < 0.0005, "\(written)")
            #expect(UTCTimestamp.rfc3339(mine) == written)
        }
    }

    @Test func knownInstantsInEveryForm() throws {
        let instant = Date(timeIntervalSince1970: 1_796_197_214.125)  // 2026-12-02T07:40:14.125Z, a Wednesday
        #expect(UTCTimestamp.rfc3339(instant) == "2026-12-02T07:40:14.125Z")
        #expect(UTCTimestamp.basic(instant) == "20261202T074014Z")
        #expect(UTCTimestamp.httpDate(instant) == "Wed, 02 Dec 2026 07:40:14 GMT")
        #expect(UTCTimestamp.parseHTTPDate("Wed, 02 Dec 2026 07:40:14 GMT") == Date(timeIntervalSince1970: 1_796_197_214))
        #expect(UTCTimestamp.rfc3339(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(UTCTimestamp.rfc3339(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
        #expect(UTCTimestamp.rfc3339(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000Z")
        #expect(UTCTimestamp.httpDate(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(UTCTimestamp.httpDate(Date(timeIntervalSince1970: -86400)) == "Wed, 31 Dec 1969 00:00:00 GMT")
        // Offsets, lower-case separators, any length of fraction.
        #expect(UTCTimestamp.parseRFC3339("2026-12-02T09:40:14+02:00") == Date(timeIntervalSince1970: 1_796_197_214))
        #expect(UTCTimestamp.parseRFC3339("2026-12-02t02:10:14-05:30") == Date(timeIntervalSince1970: 1_796_197_214))
        let fine = try #require(UTCTimestamp.parseRFC3339("2026-12-02T07:40:14.1250000z"))
        #expect(fine.timeIntervalSince1970 == 1_796_197_214.125)
    }

    @Test(arguments: [
        "", "2026-12-02", "2026-12-02T07:40:14", "2026-12-02T07:40:14.Z", "2026-13-02T07:40:14Z", "2026-02-29T07:40:14Z",
        "2026-12-02T24:00:00Z", "2026-12-02T07:60:14Z", "2026-12-02T07:40:60Z", "2026-12-02T07:40:14+24:00", "2026-12-02T07:40:14+0200",
        "2026-12-02T07:40:14Zjunk", "20261202T074014Z", "2026-12-O2T07:40:14Z", "+2026-12-02T07:40:14Z", "2026-12-02T07:40:14.123456789",
    ])
    func refusesMalformedRFC3339(_ text: String) {
        #expect(UTCTimestamp.parseRFC3339(text) == nil)
    }

    @Test(arguments: [
        "", "Wed, 02 Dec 2026 07:40:14 UTC", "Wed, 2 Dec 2026 07:40:14 GMT", "Wednesday, 02-Dec-26 07:40:14 GMT", "Wed Dec  2 07:40:14 2026",
        "Wed, 31 Feb 2026 07:40:14 GMT", "Xyz, 02 Dec 2026 07:40:14 GMT", "Wed, 02 Dec 2026 07:40:14 GMT ",
    ])
    func refusesMalformedHTTPDates(_ text: String) {
        #expect(UTCTimestamp.parseHTTPDate(text) == nil)
    }
}

extension ISO8601DateFormatter {
    static var fractional: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
