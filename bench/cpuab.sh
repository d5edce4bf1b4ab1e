#!/usr/bin/env bash
# bench/cpuab.sh BIN_A BIN_B: relayd CPU per message (utime+stime of the daemon,
# from /proc) for 2000 x 4 KB over 8 sessions, ed25519 signing, alternating
# A and B ROUNDS times. CPU time is much less sensitive to a shared
# machine's load than throughput.
# Run as root (smtp-sink drops to nobody). Loopback only; every wait is
# bounded by lib.sh. Example: build two revisions with go build -o, then
# sudo bench/cpuab.sh /tmp/relayd-old /tmp/relayd-new
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 BIN_A BIN_B" >&2; exit 64; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
ROUNDS=${ROUNDS:-4}; CONCURRENCY=8; SIGN_KIND=${SIGN_KIND:-ed25519}
WORK=$(mktemp -d /var/tmp/relayd-cpuab.XXXXXX); chmod 755 "$WORK"
trap cleanup EXIT
"$1" dkim keygen --domain bench.example --selector ed --algorithm ed25519 --out "$WORK/ed25519.pem" >/dev/null
TCK=$(getconf CLK_TCK)
one() {
	local BIN=$1 tag=$2 dir=$WORK/r-$2
	mkdir -p "$dir"; start_sink 2000 "$dir"
	{ echo "hostname = \"relay.bench.example\""; echo "state_dir = \"$dir/spool\""
	  echo "[listen]"; echo "smtp = [\"127.0.0.1:0\"]"
	  echo "[upstream]"; echo "address = \"127.0.0.1:$SINK_PORT\""; echo "tls = \"none\""; echo "ca_file = \"/etc/ssl/certs/ca-certificates.crt\""
	  echo "[queue]"; echo "concurrency = 8"
	  [ "$SIGN_KIND" = ed25519 ] && printf '[[dkim]]\ndomain = "bench.example"\nselector = "ed"\nkey_file = "%s"\n' "$WORK/ed25519.pem"
	} > "$dir/relayd.toml"
	RELAYD_CONFIG= "$BIN" serve --config "$dir/relayd.toml" 2>"$dir/relayd.log" &
	local pid=$! port=
	track $pid
	for i in $(seq 1 300); do port=$(sed -n 's/.*msg=listening addr=127\.0\.0\.1:\([0-9]*\) mode=smtp.*/\1/p' "$dir/relayd.log" | head -1); [ -n "$port" ] && break; sleep 0.1; done
	[ -n "$port" ] || die "relayd did not listen: $(tail -5 "$dir/relayd.log")"
	local c0; c0=$(awk '{print $14+$15}' /proc/$pid/stat)
	drive 2000 8 4096 "$port" "$dir"
	local c1; c1=$(awk '{print $14+$15}' /proc/$pid/stat)
	stop_pid $pid
	awk -v a=$c0 -v b=$c1 -v t=$TCK -v tag=$tag -v r="$DRIVE_RES" 'BEGIN{printf "%s cpu_us_per_msg=%.0f msgs/s=%s\n", tag, (b-a)/t/2000*1e6, r}'
	rm -rf "$dir"
}
for r in $(seq 1 $ROUNDS); do one "$1" A$r; one "$2" B$r; done
