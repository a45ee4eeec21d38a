#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The process's open-file limit, raised at start so that the connection cap, not the
/// descriptor table, is what refuses peers (a full table refuses everyone, silently).
enum DescriptorLimit {
    /// Descriptors a receiver needs besides its connections: listeners, event loops, the
    /// files being received and committed, logs.
    static let reserve = 256

    /// Raises the soft RLIMIT_NOFILE to the hard limit, and warns when even that is too low
    /// for `connections` connections (each holds a socket and up to a few files).
    static func raise(toServe connections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let needed = UInt64(clamping: min(connections, 1 << 40)) * 3 + UInt64(reserve)
        if UInt64(limit.rlim_cur) < needed {
            logger.warning("the open-file limit is too low for the connection cap; raise LimitNOFILE or lower --max-connections",
                           metadata: ["limit": "\(limit.rlim_cur)", "needed": "\(needed)"])
        }
    }
}
