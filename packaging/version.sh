#!/bin/sh
# Prints relayd's version for the binary and the Debian package, from git.
# A tag vX.Y.Z gives X.Y.Z (plus +N.gHASH after it); otherwise
# 0.0~gitDATE.HASH, so the version always starts with a digit (dpkg needs
# that) and sorts by commit date. "+dirty" marks uncommitted changes.
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo 0.0~unknown
	exit 0
fi
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty="+dirty"
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	# v1.2.3-4-gabcdef -> 1.2.3+4.gabcdef
	echo "$d" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+\1.g/' -e "s/\$/$dirty/"
	exit 0
fi
date=$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S)
hash=$(git rev-parse --short=12 HEAD)
echo "0.0~git$date.$hash$dirty"
