#!/usr/bin/env bash
# bench/bigsign.sh: relays one 50 MB message through relayd with RSA-2048 and
# Ed25519 signing (dual signatures) to smtp-sink, and reports how much
# relayd's peak RSS (VmHWM) grew: issue 3 requires under 16 MB, because
# signing streams (go-msgauth's dkim.NewSigner) and DATA goes to disk.
#
#   sudo bench/bigsign.sh          # SIZE=52428800 by default
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"

SIZE=${SIZE:-52428800}
WORKDIR_BASE=${WORKDIR_BASE:-/var/tmp}
[ "$(id -u)" = 0 ] || die "run as root (smtp-sink drops to nobody)"
command -v smtp-source >/dev/null || die "smtp-source missing: apt-get install postfix"

WORK=$(mktemp -d "$WORKDIR_BASE/relayd-bigsign.XXXXXX")
chmod 755 "$WORK"
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$REPO" && go build -o "$WORK/relayd" ./cmd/relayd)
"$WORK/relayd" dkim keygen --domain bench.example --selector ed --algorithm ed25519 --out "$WORK/ed.pem" >/dev/null
"$WORK/relayd" dkim keygen --domain bench.example --selector rsa --algorithm rsa --out "$WORK/rsa.pem" >/dev/null

SINK_DUMP=1 start_sink 1 "$WORK"
cat >"$WORK/relayd.toml" <<-EOF2
	hostname = "relay.bench.example"
	state_dir = "$WORK/spool"
	[listen]
	smtp = ["127.0.0.1:0"]
	max_message_bytes = $((SIZE + 1048576))
	[upstream]
	address = "127.0.0.1:$SINK_PORT"
	tls = "none"
	[[dkim]]
	domain = "bench.example"
	selector = "ed"
	key_file = "$WORK/ed.pem"
	[[dkim]]
	domain = "bench.example"
	selector = "rsa"
	key_file = "$WORK/rsa.pem"
EOF2
RELAYD_CONFIG= "$WORK/relayd" serve --config "$WORK/relayd.toml" 2>"$WORK/relayd.log" &
pid=$!
track "$pid"
port=
for i in $(seq 1 300); do
	port=$(sed -n 's/.*msg=listening addr=127\.0\.0\.1:\([0-9]*\) mode=smtp.*/\1/p' "$WORK/relayd.log" | head -1)
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || die "relayd exited: $(tail -5 "$WORK/relayd.log")"
	sleep 0.1
done
[ -n "$port" ] || die "relayd did not listen"
sleep 1
before=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
drive 1 1 "$SIZE" "$port" "$WORK"
[ "$DRIVE_RES" != "FAIL FAIL FAIL" ] || die "the message did not reach the sink"
after=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
sigs=$(cat "$WORK"/dump/* | grep -c '^DKIM-Signature:' || true)
[ "$sigs" = 2 ] || die "the sink got $sigs DKIM signatures, want 2"
stop_pid "$pid"
growth=$((after - before))
verdict=ok
[ "$growth" -lt 16384 ] || verdict=FAIL
printf 'bigsign: %d-byte message, rsa+ed25519 signed, relayed in %s s; relayd VmHWM %d kB -> %d kB, growth %d kB (limit 16384 kB): %s\n' \
	"$SIZE" "$(echo "$DRIVE_RES" | awk '{print $2}')" "$before" "$after" "$growth" "$verdict"
[ "$verdict" = ok ]
