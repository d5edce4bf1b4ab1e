#!/bin/sh
# bench/routes.sh: route isolation (issue 15). 1,000 messages to route A,
# whose smarthost waits 10 s before every reply, then 1,000 to route B:
# B's drain rate against B alone. Loopback only, bounded (the sink waits at
# most 5 minutes per phase). Run from the repository root.
set -eu
cd "$(dirname "$0")/.."
exec timeout 900 go test -run NONE -bench RouteIsolation -benchtime 1x -timeout 14m ./bench/routes
