#!/usr/bin/env bash
# bench/run.sh: end-to-end throughput of relayd versus Postfix as a null
# client, both with their normal durability, on loopback.
#
#   smtp-source --> MTA (relayd | Postfix) --> smtp-sink -M N
#
# A run's time is from just before smtp-source connects until smtp-sink has
# received the Nth message and exited (-M N). The sink is started before the
# MTA and is the same program for every system. Each (system, workload) cell
# is measured RUNS times, alternating systems, and the median is reported.
#
# Must run as root (Postfix's master runs as root and drops to "postfix";
# smtp-sink drops to "nobody"). Only 127.0.0.1 is used. All processes are
# stopped and the work directory removed on exit (KEEP=1 keeps it).
#
# Environment knobs: RUNS (3), SMALL_N (2000), SMALL_S (8), BIG_N (100),
# BIG_S (4), CONCURRENCY (relayd [queue] concurrency, 8), WORKDIR_BASE
# (/var/tmp: a normal disk, not tmpfs), SIGN ("off ed25519 rsa"),
# OPENDKIM (auto|0: Postfix+opendkim RSA cell when opendkim is installed),
# PROFILE (1: also take a perf profile of relayd, see bench/profile.sh),
# FLUSH (relayd queue.flush: auto, syncfs or fdatasync; unset: the default).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"

RUNS=${RUNS:-3}
SMALL_N=${SMALL_N:-2000}
SMALL_S=${SMALL_S:-8}
BIG_N=${BIG_N:-100}
BIG_S=${BIG_S:-4}
CONCURRENCY=${CONCURRENCY:-8}
SIGN=${SIGN:-"off ed25519 rsa"}
OPENDKIM=${OPENDKIM:-auto}
WORKDIR_BASE=${WORKDIR_BASE:-/var/tmp}

[ "$(id -u)" = 0 ] || die "run as root (Postfix and smtp-sink need it)"
for b in /usr/sbin/postfix /usr/sbin/smtp-source /usr/sbin/smtp-sink go; do
	command -v "$b" >/dev/null || die "missing $b"
done
if [ "$OPENDKIM" = auto ]; then
	if command -v opendkim >/dev/null; then OPENDKIM=1; else OPENDKIM=0; fi
fi

WORK=$(mktemp -d "$WORKDIR_BASE/relayd-bench.XXXXXX")
chmod 755 "$WORK" # the postfix user must reach its queue below
trap cleanup EXIT
trap 'exit 130' INT TERM

log "work directory $WORK ($(df -T "$WORK" | awk 'NR==2{print $2" on "$1}'))"
log "building relayd (no -race)"
(cd "$REPO" && go build -o "$WORK/relayd" ./cmd/relayd)
BIN=$WORK/relayd
REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)

"$BIN" dkim keygen --domain bench.example --selector ed --algorithm ed25519 --out "$WORK/ed25519.pem" >/dev/null
"$BIN" dkim keygen --domain bench.example --selector rsa --algorithm rsa --bits 2048 --out "$WORK/rsa.pem" >/dev/null

RESULTS=$WORK/results.tsv # system workload run msgs/s seconds intake_s rss_kb sent
: >"$RESULTS"

# cell SYSTEM SIGN WORKLOAD RUN: one measurement, appended to $RESULTS.
cell() {
	local sys=$1 sign=$2 wl=$3 run=$4 n s l
	case $wl in
	4k) n=$SMALL_N s=$SMALL_S l=4096 ;;
	1m) n=$BIG_N s=$BIG_S l=1048576 ;;
	esac
	local name="$sys/$sign"
	log "run $run: $name $wl ($n x $l bytes, $s sessions)"
	local line
	# A failed measurement is recorded as FAIL (and shown in the summary),
	# not fatal: the other cells still run.
	line=$("measure_$sys" "$sign" "$n" "$s" "$l" "$run-$wl-$sign") || line="FAIL FAIL FAIL - 0"
	log "  -> $line"
	printf '%s\t%s\t%s\t%s\n' "$name" "$wl" "$run" "$line" >>"$RESULTS"
}

# Sanity: the signing cells really sign (the sink keeps 3 messages each).
for sg in $SIGN; do
	case $sg in
	ed25519) check_signed relayd ed25519 ed25519-sha256 ;;
	rsa)
		check_signed relayd rsa rsa-sha256
		if [ "$OPENDKIM" = 1 ]; then check_signed postfix rsa rsa-sha256; fi
		;;
	esac
done

# The matrix: every run measures every cell once, alternating systems.
for run in $(seq 1 "$RUNS"); do
	for wl in 4k 1m; do
		cell postfix off "$wl" "$run"
		cell relayd off "$wl" "$run"
		for sg in $SIGN; do
			[ "$sg" = off ] && continue
			if [ "$sg" = rsa ] && [ "$OPENDKIM" = 1 ]; then cell postfix rsa "$wl" "$run"; fi
			cell relayd "$sg" "$wl" "$run"
		done
	done
done

OUT=$HERE/results-$(date +%Y%m%d-%H%M%S).txt
{
	echo "relayd bench, $(date -u +%Y-%m-%dT%H:%MZ), relayd $REV, $(nproc) CPUs, $(uname -r), postfix $(postconf -h mail_version)"
	echo "spool: $(df -T "$WORK" | awk 'NR==2{print $2" on "$1}'); runs per cell: $RUNS (median shown); relayd queue.concurrency=$CONCURRENCY queue.flush=${FLUSH:-default}"
	echo "4k = $SMALL_N x 4 KB over $SMALL_S sessions; 1m = $BIG_N x 1 MB over $BIG_S sessions"
	echo
	summarize "$RESULTS"
	echo
	echo "raw: system/signing load run | msgs/s e2e_seconds intake_seconds relayd_VmHWM_kB mta_log_status=sent"
	cat "$RESULTS"
} | tee "$OUT"
log "written $OUT"
