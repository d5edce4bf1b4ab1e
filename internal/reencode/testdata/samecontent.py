# Usage: samecontent.py ORIGINAL FIXED
# Exits 0 when both messages have the same MIME tree and every leaf decodes
# to the same bytes (Python's email package), 1 otherwise.
import email, email.policy, sys

def leaves(path):
    with open(path, 'rb') as f:
        msg = email.message_from_binary_file(f, policy=email.policy.compat32)
    out = []
    for part in msg.walk():
        if part.is_multipart():
            out.append(('multipart', part.get_content_type()))
        else:
            out.append((part.get_content_type(), part.get_payload(decode=True)))
    return out

a, b = leaves(sys.argv[1]), leaves(sys.argv[2])
if a != b:
    for x, y in zip(a, b):
        if x != y:
            print('differs:', x[0], y[0], len(x[1] or b''), len(y[1] or b''))
    print('parts:', len(a), len(b))
    sys.exit(1)
print('same', len(a))
