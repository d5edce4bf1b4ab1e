#!/usr/bin/python3
"""Independent DKIM check with dkimpy (Debian python3-dkim), for signer tests.

usage: dkimverify.py MESSAGE_FILE NAME=TXT [NAME=TXT ...]

NAME is a key's DNS name ("sel._domainkey.example.com", trailing dot optional)
and TXT its record. Every DKIM-Signature in the message is verified; one line
per signature is printed. Exit 0 only if there is at least one signature and
every one of them passes; 1 otherwise; 2 on usage errors.
"""
import sys

import dkim


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        msg = f.read()
    records = {}
    for arg in sys.argv[2:]:
        name, sep, txt = arg.partition("=")
        if not sep:
            print("bad NAME=TXT argument: %r" % arg, file=sys.stderr)
            return 2
        records[name.rstrip(".").lower()] = txt.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip(".").lower())

    d = dkim.DKIM(msg)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    if n == 0:
        print("no DKIM-Signature")
        return 1
    ok = True
    for i in range(n):
        try:
            res = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
        except Exception as e:  # dkimpy raises on malformed input
            print("sig %d: error %s" % (i, e))
            res = False
        print("sig %d: %s" % (i, "pass" if res else "fail"))
        ok = ok and bool(res)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
