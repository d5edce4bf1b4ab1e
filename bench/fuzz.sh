#!/usr/bin/env bash
# bench/fuzz.sh: run every fuzz target with -fuzz for longer than CI does.
# go test ./... runs only the seed corpora in testdata/fuzz; .ci/run also
# runs this script with FUZZTIME=3000x, a short real fuzzing pass per target.
#   FUZZTIME=5m bench/fuzz.sh      # per target (default 60s)
# A count (3000x) rather than a duration in CI: with Go 1.26 a duration can
# end in a spurious "context deadline exceeded" failure when it expires
# while a worker is mid-run (golang.org/issue/75804, fixed in Go 1.27). A
# real finding always writes its input to PKG/testdata/fuzz/TARGET/.
# New failing inputs are written by Go into PKG/testdata/fuzz/TARGET/;
# commit them as regression seeds after fixing the bug.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-60s}
targets=(
	"./cleanup FuzzParseAddress"
	"./cleanup FuzzReadHeader"
	"./cleanup FuzzSubmit"
	"./queue FuzzReadMeta"
	"./sendmail FuzzParseArgs"
	"./sendmail FuzzReadDrop"
	"./dsn FuzzCompose"
	"./upstream FuzzDataWriter"
	"./smtpd FuzzDotDecoder"
)
fail=0
for t in "${targets[@]}"; do
	set -- $t
	pkg=$1 name=$2
	if ! grep -rqs "func $name(" "$pkg"/*_test.go; then
		echo "skip $pkg $name (not found)"
		continue
	fi
	echo "== $pkg $name ($FUZZTIME)"
	if ! go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$pkg"; then
		fail=1
	fi
done
if [ "$fail" = 0 ]; then echo "fuzz: all targets passed ($FUZZTIME each)"; else echo "fuzz: FAILURES (see above)"; fi
exit "$fail"
