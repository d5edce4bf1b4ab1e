#!/usr/bin/python3
"""Independent check of a relayd notice: parse it with Python's email
package and print a JSON summary for dsn's Go tests to assert on.

Usage: parse_dsn.py FILE.eml
"""
import email
import email.policy
import json
import sys


def fields(block):
    return {k: str(v) for k, v in block.items()}


def main():
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    defects = []
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
    parts = list(msg.iter_parts()) if msg.is_multipart() else []
    out = {
        "headers": [[k, str(v)] for k, v in msg.items()],
        "content_type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "parts": [p.get_content_type() for p in parts],
        "defects": defects,
        "longest_line": max(len(l) for l in data.split(b"\r\n")),
        "bare_lf": data.replace(b"\r\n", b"").count(b"\n"),
    }
    if parts:
        out["text"] = parts[0].get_content()
    if len(parts) > 1 and parts[1].get_content_type() == "message/delivery-status":
        blocks = parts[1].get_payload()
        out["per_message"] = fields(blocks[0])
        out["recipients"] = [fields(b) for b in blocks[1:]]
    if len(parts) > 2:
        third = parts[2]
        if third.get_content_type() == "message/rfc822":
            inner = third.get_payload()[0]
            out["original_subject"] = str(inner.get("Subject", ""))
            out["original_body"] = inner.get_payload(decode=True).decode("utf-8", "replace")
        else:
            out["original_headers"] = third.get_content()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
