import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VaultlineCore
import VaultlineGraph
import VaultlineReplication
import VaultlineService

extension M365 {
    struct M365Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Back up Microsoft 365 continuously: poll what is due, store a snapshot when anything advanced, replicate it at once.",
            discussion: """
                Each collection (mail folder, calendar, contact folders, OneDrive, library) is \
                polled by its delta link: again soon after it changed, less often while it does \
                not, never less often than the RPO allows. A snapshot is stored at most every \
                --commit-interval seconds, only when something advanced; with --replicate-to it \
                is sent to site B at once. HTTP on --listen: /metrics (Prometheus), /livez, \
                /readyz, /status (JSON; `vaultline m365 status` reads it). SIGTERM or SIGINT \
                lets the pass in flight store its snapshot, then exits; a restart carries on \
                from that snapshot's delta links. With --coordinator, several serve processes \
                share the tenant through PostgreSQL: each mailbox, OneDrive and site is a task \
                that one of them holds at a time under a lease; find and m365 restore --at TIME \
                see the tenant whole, whichever process wrote which part.
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var graph: GraphOptions
        @OptionGroup var scope: M365ScopeOptions
        @OptionGroup var identity: SiteIdentityOptions
        @OptionGroup(title: "Retention, prune and scrub") var maintenance: ServeMaintenanceOptions

        @Option(help: "Replicate each snapshot to this receiver (HOST:PORT), with --cert, --key and --ca.")
        var replicateTo: String?
        @Option(help: "HTTP address for /metrics, /livez, /readyz and /status (HOST:PORT; port 0 picks one).")
        var listen = "127.0.0.1:9464"
        @Option(help: "Recovery point objective: the oldest any collection's newest copy may be (seconds).")
        var rpo = 300.0
        @Option(help: "Store a snapshot at most this often (seconds).")
        var commitInterval = 60.0
        @Option(help: "A quiet mail folder, calendar or contacts collection is polled again after this (seconds).")
        var mailInterval = 30.0
        @Option(help: "A quiet OneDrive or library is polled again after this (seconds), or as often as --drive-polls-per-minute allows.")
        var driveInterval = 45.0
        @Option(help: "Delta polls of quiet drives a minute in all (each costs one of the tenant's 1,200 to 6,000 resource units a minute).")
        var drivePollsPerMinute = 600.0
        @Option(help: "A collection that changed is polled again this long after its pass (seconds).")
        var debounce = 5.0
        @Option(help: "Share the tenant with other serve processes through this PostgreSQL server (postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]; PGPASSWORD is read too).")
        var coordinator: String?
        @Option(help: "This worker's name in the coordinator (default: host name and process id).")
        var worker: String?
        @Option(help: "With --coordinator: tasks (mailboxes, OneDrives, sites) taken at once.")
        var batchSize = 64
        @Option(help: "With --coordinator: a task's lease (seconds, on the server's clock); another worker takes the task when it runs out.")
        var lease = 60.0
        @Option(help: "Subscribe to Graph change notifications posted to this public HTTPS base URL, which your proxy forwards to --listen (URL/graph/notify and URL/graph/lifecycle); a notification only polls its collections early. With --coordinator, the worker holding the maintenance lease keeps the subscriptions in the database and any worker takes the posts.")
        var notifyURL: String?
        @Option(help: "Log level: debug, info, warning, error.")
        var logLevel = "info"

        func validate() throws {
            for (name, value) in [("--rpo", rpo), ("--commit-interval", commitInterval), ("--mail-interval", mailInterval),
                                  ("--drive-interval", driveInterval)] where !(value >= 1 && value <= 86_400) {
                throw ValidationError("\(name) must be 1…86400 seconds")
            }
            guard debounce >= 0 && debounce <= 3_600 else { throw ValidationError("--debounce must be 0…3600 seconds") }
            guard batchSize >= 1 && batchSize <= 1_000 else { throw ValidationError("--batch-size must be 1…1000") }
            guard lease >= 3 && lease <= 3_600 else { throw ValidationError("--lease must be 3…3600 seconds") }
            guard drivePollsPerMinute >= 1 && drivePollsPerMinute <= 100_000 else { throw ValidationError("--drive-polls-per-minute must be 1…100000") }
            if let notifyURL {
                guard let parts = URLComponents(string: notifyURL), parts.scheme == "https" || parts.scheme == "http", parts.host?.isEmpty == false,
                      parts.query == nil else {
                    throw ValidationError("--notify-url must be an https:// URL without a query (Graph posts to URL/graph/notify)")
                }
            }
        }

        func run() async throws {
            try await reporting {
                let logger = makeLogger("vaultline.serve", level: Logger.Level(rawValue: logLevel) ?? .info)
                let repo = try repository.open()
                let clientOptions = try graph.clientOptions()
                let name = worker ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
                let shared = try coordinator.map { try PostgresCoordinator(url: $0, tenant: try graph.credentials().tenantId, worker: name, logger: logger) }
                // With a coordinator the tenant's drive budget and its pauses are the workers' together.
                let client = GraphClient(credentials: try graph.credentials(), options: clientOptions,
                                         driveBudget: shared.map { SharedDriveBudget(coordinator: $0, unitsPerMinute: clientOptions.driveUnitsPerMinute) })
                var configuration = M365Service.Configuration()
                configuration.backup = try scope.options()
                configuration.policy.commitIntervalSeconds = commitInterval
                configuration.policy.rpoSeconds = rpo
                configuration.policy.mailBaseSeconds = mailInterval
                configuration.policy.driveBaseSeconds = driveInterval
                configuration.policy.debounceSeconds = debounce
                configuration.policy.drivePollsPerMinute = drivePollsPerMinute
                let metrics = ServiceMetrics(version: Vaultline.configuration.version, replicates: replicateTo != nil)
                let state = ServiceState(rpoSeconds: rpo, replicates: replicateTo != nil)
                var replicator: SiteBReplicator?
                if let replicateTo {
                    let (host, port) = try parseHostPort(replicateTo, option: "--replicate-to")
                    var options = ReplicationSender.Options(host: host, port: port, identity: try identity.load())
                    options.retries = 3
                    replicator = SiteBReplicator(repositoryPath: try repository.localRepositoryPath, options: options, metrics: metrics,
                                                 state: state, logger: logger)
                }
                let service: any Service
                let housekeeping: ServiceMaintenance
                var notifications: ChangeNotifications?
                let notifyBase = notifyURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
                let notifyOptions = notifyBase.map { ChangeSubscriptions.Options(notificationURL: $0 + "/graph/notify", lifecycleURL: $0 + "/graph/lifecycle") }
                let graphBase = try graph.credentials().graphBase
                let maintenanceConfiguration = try maintenance.configuration()
                if let shared {
                    var work = CoordinatedWorker.Configuration()
                    work.backup = configuration.backup
                    work.policy = configuration.policy
                    work.batchSize = batchSize
                    work.leaseSeconds = lease
                    // One worker at a time runs the maintenance and keeps the notification subscriptions.
                    let maintenanceLease = max(600, lease)
                    let worker = CoordinatedWorker(coordinator: shared, repository: repo, client: client, configuration: work, state: state,
                                                   metrics: metrics, replicator: replicator, logger: logger)
                    service = worker
                    if let notifyOptions {
                        let subscriptions = try ChangeSubscriptions(client: client, options: notifyOptions, store: PostgresSubscriptionStore(coordinator: shared), logger: logger)
                        notifications = ChangeNotifications(
                            subscriptions: subscriptions, metrics: metrics, logger: logger, wanted: { worker.subscriptionTargets() },
                            mayReconcile: { (try? await shared.holdMaintenance(leaseSeconds: maintenanceLease)) == true },
                            markDue: { await worker.markDue($0) })
                    }
                    // One worker runs the maintenance, and none while tasks wait for a worker.
                    let behindSeconds = rpo * M365Service.maintenanceYieldsAt
                    housekeeping = ServiceMaintenance(
                        repository: repo, graphBase: graphBase, configuration: maintenanceConfiguration, metrics: metrics, state: state,
                        logger: logger, atRisk: { false },
                        mayRun: {
                            guard (try? await shared.holdMaintenance(leaseSeconds: maintenanceLease)) == true else { return false }
                            return (try? await shared.overdueTasks(olderThanSeconds: behindSeconds)) == 0
                        },
                        onStop: {
                            do { try await shared.releaseMaintenance() } catch {
                                logger.warning("the maintenance lease was not given back; it runs out by itself", metadata: ["error": "\(error)"])
                            }
                        })
                } else {
                    let single = M365Service(repository: repo, client: client, configuration: configuration, replicator: replicator,
                                             metrics: metrics, state: state, logger: logger)
                    service = single
                    if let notifyOptions {
                        let store = FileSubscriptionStore(path: maintenanceConfiguration.stateDirectory + "/serve-subscriptions-\(repo.config.id.prefix(16)).json")
                        notifications = ChangeNotifications(subscriptions: try ChangeSubscriptions(client: client, options: notifyOptions, store: store, logger: logger),
                                                            schedule: single.schedule, metrics: metrics, logger: logger)
                    }
                    housekeeping = ServiceMaintenance(repository: repo, graphBase: graphBase, configuration: maintenanceConfiguration,
                                                      metrics: metrics, state: state, logger: logger, atRisk: { single.isFallingBehind() })
                }
                let (host, port) = try parseHostPort(listen, option: "--listen")
                let http = StatusServer.application(host: host, port: port, metrics: metrics, state: state, logger: logger,
                                                    notifications: notifications) { bound in
                    logger.info("serving metrics and health", metadata: ["address": "http://\(host):\(bound)"])
                }
                // Shut down in reverse: the pass loop first (its pass in flight stores its
                // snapshot), then maintenance (a scrub stops at its next batch, a prune ends),
                // then replication, then HTTP, which answers until the end.
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: http)]
                if let replicator { services.append(.init(service: replicator)) }
                services.append(.init(service: housekeeping))
                if let notifications { services.append(.init(service: notifications)) }
                services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup))
                let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                do { try await group.run() } catch {
                    try? await client.shutdown()
                    shared?.close()
                    throw error
                }
                try await client.shutdown()
                shared?.close()
            }
        }
    }

    struct M365Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status",
            abstract: "Ask a running `m365 serve` how it is: its last pass, its newest snapshot at each site, its oldest collection.",
            discussion: "Exits 0 when healthy, 1 when the last pass failed or the RPO is at risk, 2 when the service does not answer.")

        @Option(help: "The service's HTTP address (its --listen).")
        var url = "http://127.0.0.1:9464"
        @Flag(help: "Print the status as JSON.")
        var json = false

        func run() async throws {
            let status: ServiceStatus
            do {
                status = try await ServiceStatus.fetch(from: url)
            } catch {
                FileHandle.standardError.write(Data("vaultline: error: no status from \(url): \(error)\n".utf8))
                throw ExitCode(2)
            }
            if json {
                try printJSON(status)
            } else {
                print(status.summary(now: Date()))
            }
            if status.lastStatus == "Failed" || status.rpoAtRisk { throw ExitCode(1) }
        }
    }
}
