#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs the whole test suite.
# The receiver's timeout tests, the upload, resource-unit and request budget tests, the token-refresh
# test (a request must arrive within 3 s of taking its token: it failed once in four runs beside
# the S3 suites and their server, 2026-12-02), the coordinator's lease test (leases of 2 s
# that must not run out between two statements), and two replication
# tests that act at a moment in a transfer (a kill while a pack arrives, a GET bound read after
# a second) depend on time; run beside the rest of the suite (kill trials, CLI subprocesses) on
# a two-core machine they measure its load instead (both failed so, 1 in 1 run), so they run
# in a second pass of their own. So does the service maintenance test (a loop of 50 ms rounds
# that ran two rounds in 120 s beside the kill trials, 2026-12-03), and the scrub's rate test (it ran at 78 % of its set rate
# beside the suite in CI, 2026-12-02), and the receiver's fuzz corpus (0.6 s alone, 167 s and
# past its 2-minute hang guard beside the suite in CI, 2026-12-03), and the service's SIGTERM test
# (a change must reach a pass within 3 s before the SIGTERM: beside the suite it took 84 s and
# the pass had not started, 2026-12-03). The short RPO run (its bound is seconds of latency, and
# its three processes load both cores: beside the quiet pass it failed four receiver-limit
# tests, 2026-12-02) runs last, alone. Arguments (a --filter) run one pass with them instead.
# RELEASE=1 runs the first pass against the release configuration instead (the build users
# run; CI does both): about 14 minutes of building on two cores, then a minute of tests.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
alone="everyChangeReachesBothSitesThroughFaultsWithinTheRPO"
quiet="ReceiverLimitsTests|scrubKeepsItsRateAndResumesFromItsCursor|UploadBudgetTests|unreadGetRepliesAreBounded|receiverKilledMidTransferAndRestartedConverges|aRequestBudgetUnderGraphsLimit|aRequestBudgetOverGraphsLimitIsHalvedUntilItFits|accessTokensAreRefreshedBeforeTheyExpire|leasesAreExclusiveAndRunOutOnTheServersClock|thinsPrunesAndScrubsTheTenantInTheWindow|receiverSurvivesItsSeedsAndTheirMutations|sigtermStoresThePassInFlightAndARestartDownloadsNothingAgain"
if [ "${RELEASE:-}" = 1 ]; then
    swift build -c release --build-tests -Xswiftc -enable-testing
    exec swift test -c release --skip-build -Xswiftc -enable-testing --skip "$quiet|$alone"
fi
swift build --build-tests
if [ $# -gt 0 ]; then
    exec swift test --skip-build "$@"
fi
swift test --skip-build --skip "$quiet|$alone"
swift test --skip-build --filter "$quiet"
swift test --skip-build --filter "$alone"
