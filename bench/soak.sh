#!/usr/bin/env bash
# bench/soak.sh: long-form crash soak. smtp-source sends MESSAGES messages
# (default 5000) in KILLS+1 batches while relayd is killed with SIGKILL at a
# random moment of each batch (default 20 kills) and restarted at once;
# then the queue drains into smtp-sink. Prints one line:
#   accepted=N delivered_unique=N lost=0 duplicates=D
# "accepted" is the set of queue IDs relayd logged as status=queued (logged
# after the commit, before the 250 is written: a superset of the 250s seen,
# minus a kill between commit and log line). "delivered" is the set of
# queue IDs found in relayd's Received fields in smtp-sink's dumps (the
# sink adds a Received field of its own with an "ESMTP id" of its own: not
# counted).
# Exit status 1 if lost > 0. The short form runs in CI (e2e TestCrashSoak).
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-5000}
KILLS=${KILLS:-20}
SESSIONS=${SESSIONS:-8}
WORK=$(mktemp -d /tmp/relayd-soak.XXXXXX)
chmod 755 "$WORK" # smtp-sink runs as nobody
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	[ "${KEEP:-0}" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

go build -o "$WORK/relayd" ./cmd/relayd
SINK=$(freeport) SMTP=$(freeport)
mkdir -p "$WORK/sink" && chmod 777 "$WORK/sink"
smtp-sink -u nobody -d "$WORK/sink/%H%M/" 127.0.0.1:$SINK 256 &
pids+=($!)
cat >"$WORK/relayd.toml" <<TOML
hostname = "soak.test.example"
state_dir = "$WORK/spool"
[listen]
smtp = ["127.0.0.1:$SMTP"]
[upstream]
address = "127.0.0.1:$SINK"
tls = "none"
timeout = "10s"
[queue]
min_backoff = "1s"
max_backoff = "2s"
concurrency = 8
TOML

relayd_pid=
start_relayd() {
	"$WORK/relayd" serve --config "$WORK/relayd.toml" 2>>"$WORK/relayd.log" &
	relayd_pid=$!
	pids+=($relayd_pid)
	for _ in $(seq 100); do
		grep -q "msg=listening addr=127.0.0.1:$SMTP" "$WORK/relayd.log" 2>/dev/null &&
			(exec 3<>/dev/tcp/127.0.0.1/$SMTP) 2>/dev/null && return 0
		sleep 0.1
	done
	echo "relayd did not start" >&2
	exit 2
}
start_relayd
batch=$((MESSAGES / (KILLS + 1)))
for i in $(seq 0 "$KILLS"); do
	n=$batch
	[ "$i" = "$KILLS" ] && n=$((MESSAGES - batch * KILLS))
	smtp-source -c -s "$SESSIONS" -m "$n" -l 512 -f soak@example.com -t sink@example.org 127.0.0.1:$SMTP >/dev/null 2>&1 &
	src=$!
	if [ "$i" -lt "$KILLS" ]; then
		sleep "0.$((RANDOM % 9 + 1))"
		kill -KILL "$relayd_pid" 2>/dev/null || true
		wait "$relayd_pid" 2>/dev/null || true
		start_relayd
	fi
	wait "$src" || true # sessions cut by the kill fail; that is the point
done
grep -o 'msg=mail id=[0-9A-Z]* .*status=queued' "$WORK/relayd.log" | sed 's/msg=mail id=\([0-9A-Z]*\).*/\1/' | sort -u >"$WORK/accepted"
deadline=$((SECONDS + 600))
while :; do
	{ grep -rhoE '\(relayd\) with ESMTP id [0-9A-Z]{18}' "$WORK/sink" 2>/dev/null || true; } | awk '{print $5}' >"$WORK/delivered.all"
	sort -u "$WORK/delivered.all" >"$WORK/delivered"
	lost=$(comm -23 "$WORK/accepted" "$WORK/delivered" | wc -l)
	[ "$lost" = 0 ] || [ $SECONDS -gt $deadline ] && break
	sleep 1
done
accepted=$(wc -l <"$WORK/accepted")
delivered=$(comm -12 "$WORK/accepted" "$WORK/delivered" | wc -l)
dups=$(($(wc -l <"$WORK/delivered.all") - $(wc -l <"$WORK/delivered")))
echo "accepted=$accepted delivered_unique=$delivered lost=$lost duplicates=$dups"
[ "$lost" = 0 ]
