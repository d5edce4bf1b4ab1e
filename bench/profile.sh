#!/usr/bin/env bash
# bench/profile.sh: CPU profile of relayd (perf, frame pointers) under the
# 4 KB workload of run.sh, for each signing mode, plus a count of the sync
# system calls relayd made. Writes bench/profile-<sign>.txt.
#
#   sudo bench/profile.sh            # SIGN="off ed25519 rsa" SMALL_N=2000
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"

SMALL_N=${SMALL_N:-2000}
SMALL_S=${SMALL_S:-8}
CONCURRENCY=${CONCURRENCY:-8}
SIGN=${SIGN:-"off ed25519 rsa"}
LOAD=${LOAD:-4k}
WORKDIR_BASE=${WORKDIR_BASE:-/var/tmp}

[ "$(id -u)" = 0 ] || die "run as root"
command -v perf >/dev/null || die "perf is not installed"

WORK=$(mktemp -d "$WORKDIR_BASE/relayd-profile.XXXXXX")
chmod 755 "$WORK"
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$REPO" && go build -o "$WORK/relayd" ./cmd/relayd)
BIN=$WORK/relayd
"$BIN" dkim keygen --domain bench.example --selector ed --algorithm ed25519 --out "$WORK/ed25519.pem" >/dev/null
"$BIN" dkim keygen --domain bench.example --selector rsa --algorithm rsa --bits 2048 --out "$WORK/rsa.pem" >/dev/null

case $LOAD in
4k) n=$SMALL_N s=$SMALL_S l=4096 ;;
1m) n=${BIG_N:-100} s=${BIG_S:-4} l=1048576 ;;
*) die "LOAD is 4k or 1m" ;;
esac

for sg in $SIGN; do
	log "profiling relayd/$sg $LOAD ($n x $l, $s sessions)"
	line=$(PROFILE=1 measure_relayd "$sg" "$n" "$s" "$l" "prof-$LOAD-$sg")
	log "  -> $line (msgs/s e2e_s intake_s rss_kb sent; slower than run.sh: perf is attached)"
	out=$HERE/profile-$LOAD-$sg.txt
	{
		echo "relayd/$sg $LOAD: $line"
		echo
		echo "== sync system calls made by relayd during the run"
		cat "$WORK/relayd-prof-$LOAD-$sg/syscalls.txt" 2>/dev/null || echo "(not available)"
		echo
		echo "== self time (top entries)"
		cat "$WORK/relayd-prof-$LOAD-$sg/perf-self.txt"
		echo
		echo "== including callees (relayd and crypto frames)"
		cat "$WORK/relayd-prof-$LOAD-$sg/perf-children.txt"
	} >"$out"
	log "written $out"
done
