import Logging
import NIOCore
import Synchronization

/// The receiver's limits on one connection and on all of them (docs/PROTOCOL.md, "Limits and
/// timeouts"). The defaults suit a WAN link; tests shorten them.
public struct ReceiverLimits: Sendable {
    /// From TCP accept to a HELLO answered with WELCOME (TLS handshake included).
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection with no transfer being received and no commit running is closed when
    /// nothing has arrived from the peer and nothing has been delivered to it for this long.
    public var idleTimeout: Duration = .seconds(300)
    /// While a transfer is being received, at least this many bytes per second must arrive,
    /// averaged over ``progressWindow``; a slower connection is closed (its files' names are
    /// released and their partial files stay, resumable).
    public var minTransferRate: Int = 8 << 10
    public var progressWindow: Duration = .seconds(60)
    /// Connections open at once, in all and from one peer address; more are closed at accept.
    public var maxConnections: Int = 256
    public var maxConnectionsPerAddress: Int = 16

    public init() {}

    /// How often the watchdog looks: often enough that a timeout fires within a quarter of
    /// itself.
    var tick: Duration {
        max(.milliseconds(10), min(.seconds(1), handshakeTimeout / 4, idleTimeout / 4, progressWindow / 4))
    }
}

/// What the session reports to its connection's watchdog (written by the session's tasks,
/// read on the event loop).
final class ConnectionActivity: Sendable {
    /// Set once WELCOME is sent.
    let handshakeDone = Atomic<Bool>(false)
    /// Transfers accepted and not yet complete: the peer owes us bytes.
    let receiving = Atomic<Int>(0)
    /// Commits (fsync, read back, hash) running: the connection waits on us, not on the peer.
    let committing = Atomic<Int>(0)
}

/// Closes a connection that does not finish its handshake in time, that stays idle, or that
/// delivers a transfer's bytes too slowly (docs/PROTOCOL.md, "Limits and timeouts"). It sits
/// between TLS and the frame decoder, so it counts plaintext bytes as they arrive, whole
/// frames or not: a peer that dribbles one frame over minutes is seen.
final class ConnectionWatchdog: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limits: ReceiverLimits
    private let activity: ConnectionActivity
    private let logger: Logger
    private var started = NIODeadline.now()
    private var lastActivity = NIODeadline.now()
    private var windowStart: NIODeadline?
    private var windowBytes = 0
    private var ticker: RepeatedTask?
    private var closed = false

    init(limits: ReceiverLimits, activity: ConnectionActivity, logger: Logger) {
        self.limits = limits
        self.activity = activity
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        started = .now()
        lastActivity = started
        let tick = TimeAmount(limits.tick)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        ticker = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
            let (watchdog, context) = bound.value
            watchdog.check(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        ticker?.cancel()
        ticker = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        ticker?.cancel()
        ticker = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytes
        lastActivity = .now()
        if windowStart != nil { windowBytes += bytes }
        context.fireChannelRead(data)
    }

    // Delivered bytes are activity only while the socket takes them: a write into a writable
    // channel, or the channel becoming writable again once the peer has read. A peer that
    // reads nothing leaves the channel unwritable, and so times out while its replies pile up.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if context.channel.isWritable { lastActivity = .now() }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { lastActivity = .now() }
        context.fireChannelWritabilityChanged()
    }

    private func check(context: ChannelHandlerContext) {
        guard !closed else { return }
        let now = NIODeadline.now()
        if !activity.handshakeDone.load(ordering: .relaxed) {
            if now - started >= TimeAmount(limits.handshakeTimeout) {
                close(context, "no handshake within \(limits.handshakeTimeout)")
            }
            return
        }
        let receiving = activity.receiving.load(ordering: .relaxed)
        let committing = activity.committing.load(ordering: .relaxed)
        if receiving > 0 {
            guard let start = windowStart else {
                windowStart = now
                windowBytes = 0
                return
            }
            let window = TimeAmount(limits.progressWindow)
            if now - start >= window {
                let seconds = Double((now - start).nanoseconds) / 1e9
                if Double(windowBytes) < Double(limits.minTransferRate) * seconds {
                    close(context, "transfer too slow: \(windowBytes) bytes in \(Int(seconds)) s, below the minimum of \(limits.minTransferRate) bytes/s")
                    return
                }
                windowStart = now
                windowBytes = 0
            }
        } else {
            windowStart = nil
        }
        if receiving == 0 && committing == 0 && now - lastActivity >= TimeAmount(limits.idleTimeout) {
            close(context, "idle for \(limits.idleTimeout)")
        }
    }

    private func close(_ context: ChannelHandlerContext, _ reason: String) {
        closed = true
        logger.warning("closing the connection", metadata: ["reason": "\(reason)"])
        ticker?.cancel()
        ticker = nil
        context.close(promise: nil)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        // Clamped rather than trapping: a configured timeout of centuries means "never".
        let (seconds, attoseconds) = duration.components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self = .nanoseconds(overflow ? (seconds < 0 ? .min : .max) : nanos.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
