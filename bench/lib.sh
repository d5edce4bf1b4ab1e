# bench/lib.sh: helpers for bench/run.sh (sourced, not executed).
#
# Every process started here is recorded in $WORK/pids (and every Postfix
# instance in $WORK/postfix-instances) so cleanup stops exactly those.
# Every wait is bounded by a deadline.

SINK_TIMEOUT=${SINK_TIMEOUT:-600} # seconds one measurement may take at most
FROM=bench@bench.example           # smtp-source writes "From: <FROM>" too
RCPT=rcpt@sink.example
CA_WORKAROUND=${CA_WORKAROUND-/etc/ssl/certs/ca-certificates.crt}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "FATAL: $*"
	exit 1
}
now() { date +%s.%N; }

track() { echo "$1" >>"$WORK/pids"; }

cleanup() {
	local rc=$? p d
	set +e
	if [ -f "$WORK/postfix-instances" ]; then
		while read -r d; do
			timeout 30 postfix -c "$d" abort >/dev/null 2>&1
		done <"$WORK/postfix-instances"
	fi
	if [ -f "$WORK/pids" ]; then
		while read -r p; do
			kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
		done <"$WORK/pids"
		sleep 0.5
		while read -r p; do
			kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
		done <"$WORK/pids"
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}

# free_port prints a TCP port that no socket uses, below Linux's ephemeral
# range (32768-60999 by default) so that no outgoing connection of the MTAs
# can take it between this check and the bind.
free_port() {
	local i p
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )")" ]; then
			echo "$p"
			return 0
		fi
	done
	die "no free port"
}

# wait_listen PORT: until something listens on 127.0.0.1:PORT (30 s).
wait_listen() {
	local i
	for i in $(seq 1 300); do
		[ -n "$(ss -Hltn "( sport = :$1 )")" ] && return 0
		sleep 0.1
	done
	log "nothing listens on port $1"
	return 1
}

# stop_pid PID: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
	local i
	kill -TERM "$1" 2>/dev/null || return 0
	for i in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	log "pid $1 ignored SIGTERM for 30 s: killing"
	kill -KILL "$1" 2>/dev/null
}

# start_sink N DIR: smtp-sink on a free port that exits after N messages
# (SINK_DUMP=1: and writes each message to DIR/dump/).
# Sets SINK_PORT and SINK_PID.
start_sink() {
	SINK_PORT=$(free_port)
	local dump=()
	if [ "${SINK_DUMP:-0}" = 1 ]; then
		mkdir -p "$2/dump"
		chown nobody "$2/dump"
		dump=(-d "$2/dump/%H%M%S.")
	fi
	timeout "$SINK_TIMEOUT" smtp-sink -u nobody "${dump[@]}" -M "$1" "127.0.0.1:$SINK_PORT" 256 \
		>"$2/sink.log" 2>&1 &
	SINK_PID=$!
	track "$SINK_PID"
	wait_listen "$SINK_PORT" || die "smtp-sink on port $SINK_PORT: $(cat "$2/sink.log")"
}

# drive N S L PORT DIR: runs smtp-source against the MTA on PORT and waits
# until the sink has all N messages. Sets DRIVE_RES to "msgs/s e2e_s
# intake_s". Not to be called in a subshell: it waits for the sink.
drive() {
	local n=$1 s=$2 l=$3 port=$4 dir=$5 t0 t1 t2 rc=0
	t0=$(now)
	timeout "$SINK_TIMEOUT" smtp-source -s "$s" -m "$n" -l "$l" -f "$FROM" -t "$RCPT" \
		"127.0.0.1:$port" >"$dir/source.log" 2>&1 || rc=$?
	t1=$(now)
	if [ "$rc" != 0 ]; then
		log "smtp-source failed ($rc): $(tail -3 "$dir/source.log")"
		kill -TERM "$SINK_PID" 2>/dev/null
	fi
	rc=0
	wait "$SINK_PID" || rc=$?
	t2=$(now)
	if [ "$rc" != 0 ]; then
		log "sink did not receive $n messages (exit $rc)"
		DRIVE_RES="FAIL FAIL FAIL"
		return 0
	fi
	DRIVE_RES=$(awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" \
		'BEGIN { printf "%.1f %.3f %.3f", n/(c-a), c-a, b-a }')
}

# measure_relayd SIGN N S L TAG: one relayd measurement with a fresh spool.
# Prints "msgs/s e2e_s intake_s rss_kb sent".
measure_relayd() {
	local sign=$1 n=$2 s=$3 l=$4 dir=$WORK/relayd-$5
	mkdir -p "$dir"
	start_sink "$n" "$dir"
	{
		echo "hostname = \"relay.bench.example\""
		echo "state_dir = \"$dir/spool\""
		echo "[listen]"
		echo "smtp = [\"127.0.0.1:0\"]"
		echo "max_message_bytes = 26214400"
		echo "[upstream]"
		echo "address = \"127.0.0.1:$SINK_PORT\""
		echo "tls = \"none\""
		# Work-around: relayd serve fails with an empty ca_file (reported);
		# with tls = "none" the roots are never used.
		[ -n "$CA_WORKAROUND" ] && echo "ca_file = \"$CA_WORKAROUND\""
		echo "[queue]"
		echo "concurrency = $CONCURRENCY"
		[ -n "${FLUSH:-}" ] && echo "flush = \"$FLUSH\""
		case $sign in
		ed25519) printf '[[dkim]]\ndomain = "bench.example"\nselector = "ed"\nkey_file = "%s"\n' "$WORK/ed25519.pem" ;;
		rsa) printf '[[dkim]]\ndomain = "bench.example"\nselector = "rsa"\nkey_file = "%s"\n' "$WORK/rsa.pem" ;;
		esac
	} >"$dir/relayd.toml"
	RELAYD_CONFIG= "$BIN" serve --config "$dir/relayd.toml" 2>"$dir/relayd.log" &
	local pid=$! i port=
	track "$pid"
	for i in $(seq 1 300); do
		port=$(sed -n 's/.*msg=listening addr=127\.0\.0\.1:\([0-9]*\) mode=smtp.*/\1/p' "$dir/relayd.log" | head -1)
		[ -n "$port" ] && break
		kill -0 "$pid" 2>/dev/null || die "relayd exited: $(tail -5 "$dir/relayd.log")"
		sleep 0.1
	done
	[ -n "$port" ] || die "relayd did not listen: $(tail -5 "$dir/relayd.log")"
	local perf_pid= stat_pid=
	if [ "${PROFILE:-0}" = 1 ]; then
		perf record -e cpu-clock -F 999 -g -o "$dir/perf.data" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
		track "$perf_pid"
		perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_syncfs,syscalls:sys_enter_sync_file_range,syscalls:sys_enter_renameat2,syscalls:sys_enter_openat \
			-p "$pid" -o "$dir/syscalls.txt" >/dev/null 2>&1 &
		stat_pid=$!
		track "$stat_pid"
		sleep 1 # let perf attach
	fi
	local res rss
	drive "$n" "$s" "$l" "$port" "$dir"
	res=$DRIVE_RES
	rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" "$stat_pid"
		wait "$perf_pid" "$stat_pid" 2>/dev/null || true
		perf report -i "$dir/perf.data" --no-children --sort symbol --percent-limit 1 --stdio -g none 2>/dev/null |
			grep -E '^ +[0-9]' | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' | head -30 >"$dir/perf-self.txt" || true
		perf report -i "$dir/perf.data" --children --sort symbol --percent-limit 2 --stdio -g none 2>/dev/null |
			grep -E '^ +[0-9]' | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' | head -45 >"$dir/perf-children.txt" || true
	fi
	stop_pid "$pid"
	echo "$res $rss $(grep -c 'status=sent' "$dir/relayd.log")"
	[ "${KEEP:-0}" = 1 ] || rm -rf "$dir/spool"
}

# start_opendkim DIR: opendkim milter signing bench.example with the same
# RSA key as relayd. Sets MILTER_PORT.
start_opendkim() {
	local dir=$1
	MILTER_PORT=$(free_port)
	cat >"$dir/opendkim.conf" <<-EOF
		Syslog                  no
		Mode                    s
		Domain                  bench.example
		Selector                rsa
		KeyFile                 $WORK/rsa.pem
		Canonicalization        relaxed/relaxed
		SignatureAlgorithm      rsa-sha256
		Socket                  inet:$MILTER_PORT@127.0.0.1
		PidFile                 $dir/opendkim.pid
		RequireSafeKeys         false
		UserID                  root
	EOF
	opendkim -f -x "$dir/opendkim.conf" >"$dir/opendkim.log" 2>&1 &
	OPENDKIM_PID=$!
	track "$OPENDKIM_PID"
	wait_listen "$MILTER_PORT" || die "opendkim on port $MILTER_PORT: $(cat "$dir/opendkim.log")"
}

# measure_postfix SIGN N S L TAG: one run of a fresh Postfix null client
# instance (own config and queue directories, default durability).
measure_postfix() {
	local sign=$1 n=$2 s=$3 l=$4 dir=$WORK/postfix-$5
	mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
	chown postfix "$dir/data"
	start_sink "$n" "$dir"
	local port milters=
	port=$(free_port)
	if [ "$sign" = rsa ]; then
		start_opendkim "$dir"
		milters="inet:127.0.0.1:$MILTER_PORT"
	fi
	cat >"$dir/etc/main.cf" <<-EOF
		# Postfix as a null client (see postfix.org/STANDARD_CONFIGURATION_README),
		# relaying everything to the sink; durability settings are the defaults.
		compatibility_level = 3.6
		queue_directory = $dir/spool
		data_directory = $dir/data
		myhostname = postfix.bench.example
		mydomain = bench.example
		myorigin = \$myhostname
		mydestination =
		local_transport = error:local delivery is disabled
		alias_maps =
		alias_database =
		inet_interfaces = loopback-only
		inet_protocols = ipv4
		mynetworks = 127.0.0.0/8
		relayhost = [127.0.0.1]:$SINK_PORT
		smtp_tls_security_level = none
		smtpd_tls_security_level = none
		message_size_limit = 26214400
		maillog_file = $dir/maillog
		smtpd_milters = $milters
		milter_default_action = tempfail
	EOF
	# Debian's master.cf services, chroot off, smtpd on its own port.
	cat >"$dir/etc/master.cf" <<-EOF
		127.0.0.1:$port inet n - n - - smtpd
		pickup    unix  n       -       n       60      1       pickup
		cleanup   unix  n       -       n       -       0       cleanup
		qmgr      unix  n       -       n       300     1       qmgr
		tlsmgr    unix  -       -       n       1000?   1       tlsmgr
		rewrite   unix  -       -       n       -       -       trivial-rewrite
		bounce    unix  -       -       n       -       0       bounce
		defer     unix  -       -       n       -       0       bounce
		trace     unix  -       -       n       -       0       bounce
		verify    unix  -       -       n       -       1       verify
		flush     unix  n       -       n       1000?   0       flush
		proxymap  unix  -       -       n       -       -       proxymap
		proxywrite unix -       -       n       -       1       proxymap
		smtp      unix  -       -       n       -       -       smtp
		relay     unix  -       -       n       -       -       smtp
		showq     unix  n       -       n       -       -       showq
		error     unix  -       -       n       -       -       error
		retry     unix  -       -       n       -       -       error
		discard   unix  -       -       n       -       -       discard
		anvil     unix  -       -       n       -       1       anvil
		scache    unix  -       -       n       -       1       scache
		postlog   unix-dgram n  -       n       -       1       postlogd
	EOF
	echo "$dir/etc" >>"$WORK/postfix-instances"
	timeout 60 postfix -c "$dir/etc" check >"$dir/check.log" 2>&1 || die "postfix check: $(cat "$dir/check.log")"
	timeout 60 postfix -c "$dir/etc" start >"$dir/start.log" 2>&1 || die "postfix start: $(cat "$dir/start.log")"
	wait_listen "$port" || die "postfix on port $port: $(cat "$dir/start.log"; tail -5 "$dir/maillog" 2>/dev/null)"
	local res
	drive "$n" "$s" "$l" "$port" "$dir"
	res=$DRIVE_RES
	timeout 60 postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
	local i
	for i in $(seq 1 300); do
		[ -s "$dir/spool/pid/master.pid" ] || break
		kill -0 "$(tr -d ' ' <"$dir/spool/pid/master.pid")" 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$milters" ]; then
		stop_pid "$OPENDKIM_PID"
	fi
	echo "$res - $(grep -c 'status=sent' "$dir/maillog" 2>/dev/null || echo 0)"
	[ "${KEEP:-0}" = 1 ] || rm -rf "$dir/spool"
}

# summarize RESULTS: median msgs/s per cell, ratios, relayd's peak RSS.
summarize() {
	awk -F'\t' '
	function median(key,   n, i, j, t, a) {
		n = split(vals[key], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		if (n == 0) return 0
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{
		split($4, f, " ")
		key = $1 SUBSEP $2
		if (!(key in seen)) { seen[key] = 1; order[++k] = key }
		if (f[1] != "FAIL") vals[key] = vals[key] " " f[1]; else fails[key]++
		all[key] = all[key] " " f[1]
		if (f[4] != "-" && f[4] + 0 > rss[key]) rss[key] = f[4]
	}
	END {
		printf "%-16s %-4s %10s %14s %14s %12s  %s\n", "system/signing", "load", "msgs/s", "vs postfix/off", "vs postfix/rsa", "peak RSS", "runs (msgs/s)"
		for (i = 1; i <= k; i++) {
			split(order[i], p, SUBSEP)
			m = median(order[i])
			base = median("postfix/off" SUBSEP p[2])
			r1 = (base > 0) ? sprintf("%.2fx", m / base) : "-"
			rb = median("postfix/rsa" SUBSEP p[2])
			r2 = (rb > 0 && p[1] ~ /rsa/) ? sprintf("%.2fx", m / rb) : "-"
			mem = (order[i] in rss) ? sprintf("%.1f MB", rss[order[i]] / 1024) : "-"
			printf "%-16s %-4s %10.1f %14s %14s %12s %s%s\n", p[1], p[2], m, r1, r2, mem, all[order[i]], (fails[order[i]] ? "  FAILED RUNS: " fails[order[i]] : "")
		}
	}' "$1"
}

# check_signed SYSTEM SIGN ALG: sends 3 messages through SYSTEM with signing
# SIGN, the sink keeping them, and dies unless every one has a
# DKIM-Signature with d=bench.example and a=ALG.
check_signed() {
	local sys=$1 sign=$2 alg=$3 dir got
	SINK_DUMP=1 "measure_$sys" "$sign" 3 1 2048 "check-$sign" >/dev/null
	dir=$WORK/$sys-check-$sign/dump
	got=$(cat "$dir"/* 2>/dev/null | tr -d '\r' | awk '/^DKIM-Signature:/ { s = 1; h = $0; next } s && /^[ \t]/ { h = h $0; next } s { print h; s = 0 }' |
		grep -c "a=$alg;.*d=bench.example\|d=bench.example;.*a=$alg" || true)
	# Sink dumps carry every message the sink received (3, maybe the last
	# one twice, as -M exits before replying to it).
	[ "$got" -ge 3 ] || die "$sys/$sign: $got of 3 messages carry a DKIM-Signature with a=$alg d=bench.example (see $dir)"
	log "$sys/$sign: messages at the sink are signed (a=$alg, d=bench.example)"
}
