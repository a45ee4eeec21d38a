import CSQLite
import Synchronization

/// A table of items keyed by id that lives on disk once it outgrows a small cache: what a
/// backup holds of one collection (a mail folder, a drive) while a delta round is applied to
/// it, so that a collection of a million items costs disk, not memory.
///
/// A private temporary SQLite database: pages stay in memory up to `cacheBytes`, then spill to
/// a file in `SQLITE_TMPDIR` (else `/var/tmp`, then `/tmp`), which is unlinked as soon as it is
/// opened, so nothing is left behind however the process ends. Writes are never made durable.
/// Rows are read back by parent in name order (byte order, as trees sort their nodes).
public final class SpillTable: Sendable {
    public struct Row: Sendable, Equatable {
        public var id: String
        /// The id of the row's parent ("" for a flat collection).
        public var parent: String
        /// The name it has in its directory.
        public var name: String
        /// The item's version as its source names it (a change key, an e-tag).
        public var tag: String
        public var isFolder: Bool
        /// Bits the caller gives a meaning (``SpillTable/addFlags(_:to:)``).
        public var flags: Int
        /// The caller's encoded record (a tree node), if any.
        public var body: [UInt8]?

        public init(id: String, parent: String = "", name: String, tag: String = "", isFolder: Bool = false, flags: Int = 0, body: [UInt8]? = nil) {
            self.id = id
            self.parent = parent
            self.name = name
            self.tag = tag
            self.isFolder = isFolder
            self.flags = flags
            self.body = body
        }
    }

    private final class Connection {
        let db: OpaquePointer
        var statements: [String: OpaquePointer] = [:]
        init(_ db: OpaquePointer) { self.db = db }
        deinit {
            for s in statements.values { sqlite3_finalize(s) }
            sqlite3_close_v2(db)
        }
    }

    private let connection: Mutex<Connection>
    private let what: String

    /// `what` names the collection in errors.
    public init(what: String, cacheBytes: Int = 256 << 10) throws {
        self.what = what
        var db: OpaquePointer?
        let rc = sqlite3_open_v2("", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            if let db { sqlite3_close_v2(db) }
            throw VaultlineError(.io, "cannot open a spill table (sqlite \(rc))", object: what)
        }
        let c = Connection(db)
        // One transaction for the table's life: nothing here needs to survive the process.
        let rc2 = sqlite3_exec(db, """
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;
            PRAGMA cache_size=-\(max(64, cacheBytes >> 10));
            CREATE TABLE rows(id TEXT PRIMARY KEY, parent TEXT NOT NULL, name TEXT NOT NULL, tag TEXT NOT NULL,
                              folder INTEGER NOT NULL, flags INTEGER NOT NULL, body BLOB) WITHOUT ROWID;
            CREATE INDEX rows_by_parent ON rows(parent, name);
            BEGIN;
            """, nil, nil, nil)
        guard rc2 == SQLITE_OK else {
            let message = String(cString: sqlite3_errmsg(db))
            throw VaultlineError(.io, "cannot set up a spill table: \(message) (sqlite \(rc2))", object: what)
        }
        connection = Mutex(c)
    }

    /// Adds `row`, or replaces the row with its id.
    public func put(_ row: Row) throws {
        try run("INSERT OR REPLACE INTO rows VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)") { s in
            bind(s, 1, row.id)
            bind(s, 2, row.parent)
            bind(s, 3, row.name)
            bind(s, 4, row.tag)
            sqlite3_bind_int(s, 5, row.isFolder ? 1 : 0)
            sqlite3_bind_int64(s, 6, Int64(row.flags))
            if let body = row.body {
                _ = body.withUnsafeBytes { sqlite3_bind_blob64(s, 7, $0.baseAddress, sqlite3_uint64($0.count), vl_sqlite_transient()) }
            } else {
                sqlite3_bind_null(s, 7)
            }
            return try step(s, done: true)
        }
    }

    public func get(_ id: String) throws -> Row? {
        var out: Row?
        try run("SELECT id, parent, name, tag, folder, flags, body FROM rows WHERE id = ?1") { s in
            bind(s, 1, id)
            if try step(s, done: false) { out = Self.row(s) }
            return true
        }
        return out
    }

    public func remove(_ id: String) throws {
        try run("DELETE FROM rows WHERE id = ?1") { s in
            bind(s, 1, id)
            return try step(s, done: true)
        }
    }

    /// Adds `flags` to the row's (nothing when there is no such row).
    public func addFlags(_ flags: Int, to id: String) throws {
        try run("UPDATE rows SET flags = flags | ?2 WHERE id = ?1") { s in
            bind(s, 1, id)
            sqlite3_bind_int64(s, 2, Int64(flags))
            return try step(s, done: true)
        }
    }

    /// Removes every row whose flags lack `flag`.
    public func removeAll(without flag: Int) throws {
        try run("DELETE FROM rows WHERE (flags & ?1) = 0") { s in
            sqlite3_bind_int64(s, 1, Int64(flag))
            return try step(s, done: true)
        }
    }

    /// The ids of rows whose flags have `flag`, in id order.
    public func ids(with flag: Int) throws -> [String] {
        var out: [String] = []
        try run("SELECT id FROM rows WHERE (flags & ?1) != 0 ORDER BY id") { s in
            sqlite3_bind_int64(s, 1, Int64(flag))
            while try step(s, done: false) { out.append(Self.text(s, 0)) }
            return true
        }
        return out
    }

    public var count: Int {
        get throws {
            var n = 0
            try run("SELECT count(*) FROM rows") { s in
                if try step(s, done: false) { n = Int(sqlite3_column_int64(s, 0)) }
                return true
            }
            return n
        }
    }

    /// Calls `body` with every row whose parent is `parent`, in name order (byte order). `body`
    /// may read and call `children` again (a walk down a hierarchy) but must not write.
    public func children(of parent: String, _ body: (Row) throws -> Void) throws {
        let sql = "SELECT id, parent, name, tag, folder, flags, body FROM rows WHERE parent = ?1 ORDER BY name"
        // Its own statement, not the cached one: walks nest.
        let s = try connection.withLock { c in try prepare(c, sql) }
        defer { sqlite3_finalize(s) }
        bind(s, 1, parent)
        while true {
            let row: Row? = try connection.withLock { _ in try step(s, done: false) ? Self.row(s) : nil }
            guard let row else { return }
            try body(row)
        }
    }

    // MARK: SQLite

    private func run(_ sql: String, _ body: (OpaquePointer) throws -> Bool) throws {
        try connection.withLock { c in
            let s: OpaquePointer
            if let cached = c.statements[sql] {
                s = cached
            } else {
                s = try prepare(c, sql)
                c.statements[sql] = s
            }
            defer {
                sqlite3_reset(s)
                sqlite3_clear_bindings(s)
            }
            _ = try body(s)
        }
    }

    private func prepare(_ c: Connection, _ sql: String) throws -> OpaquePointer {
        var s: OpaquePointer?
        let rc = sqlite3_prepare_v2(c.db, sql, -1, &s, nil)
        guard rc == SQLITE_OK, let s else { throw failure(c.db, rc, "prepare") }
        return s
    }

    /// Steps `s`: true while it yields a row. `done`: a statement that yields none.
    private func step(_ s: OpaquePointer, done: Bool) throws -> Bool {
        let rc = sqlite3_step(s)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return done }
        throw failure(sqlite3_db_handle(s), rc, "step")
    }

    private func failure(_ db: OpaquePointer?, _ rc: Int32, _ op: String) -> VaultlineError {
        let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "code \(rc)"
        let code: VaultlineError.Code = rc == SQLITE_FULL ? .noSpace : .io
        return VaultlineError(code, "spill table \(op) failed: \(message) (sqlite \(rc))", object: what)
    }

    private func bind(_ s: OpaquePointer, _ i: Int32, _ text: String) {
        sqlite3_bind_text(s, i, text, -1, vl_sqlite_transient())
    }

    private static func text(_ s: OpaquePointer, _ i: Int32) -> String {
        guard let p = sqlite3_column_text(s, i) else { return "" }
        return String(cString: p)
    }

    private static func row(_ s: OpaquePointer) -> Row {
        var body: [UInt8]?
        if sqlite3_column_type(s, 6) != SQLITE_NULL {
            let n = Int(sqlite3_column_bytes(s, 6))
            if n == 0 {
                body = []
            } else if let p = sqlite3_column_blob(s, 6) {
                body = Array(UnsafeRawBufferPointer(start: p, count: n))
            }
        }
        return Row(id: text(s, 0), parent: text(s, 1), name: text(s, 2), tag: text(s, 3), isFolder: sqlite3_column_int(s, 4) != 0,
                   flags: Int(sqlite3_column_int64(s, 5)), body: body)
    }
}
