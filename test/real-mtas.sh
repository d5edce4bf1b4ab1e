#!/bin/sh
# real-mtas.sh: issue 20's end-to-end runs of relayd against real MTAs as
# smarthost (test/postfixsmarthost): a private Postfix instance (the postfix
# package .ci/install-deps installs) and Exim, from its Debian packages
# extracted into a temporary directory with apt-get download + dpkg-deb -x
# (exim4 conflicts with postfix as a package, so it is never installed).
# Neither touches the host's MTA: see test/postfixsmarthost/doc.go.
# Runs as root (Postfix's master, Exim's mount namespace); the Exim run is
# skipped with a note when its packages cannot be downloaded.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # Exim re-executes itself from here as its own user
if (cd "$tmp" && apt-get download exim4-daemon-light exim4-base libidn12 >/dev/null 2>&1); then
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$tmp/root"
	done
	RELAYD_EXIM_ROOT="$tmp/root"
	export RELAYD_EXIM_ROOT
else
	echo "real-mtas: exim4 packages not available: the Exim run is skipped" >&2
fi
RELAYD_POSTFIX_TEST=1 go test -count=1 -v -run 'RefusalThenGoodMessage' ./test/postfixsmarthost/
