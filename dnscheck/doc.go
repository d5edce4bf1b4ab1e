// Package dnscheck is the DNS half of `relayd check`: it asks a real DNS
// resolver whether the records other mail servers will consult (SPF, DKIM,
// DMARC, MX, the HELO name and reverse DNS) agree with relayd's
// configuration, and explains every problem with the exact fix, so the admin
// learns why mail would be rejected before it is.
//
// Invariants:
//   - Checks only read DNS; they never send mail and never change anything.
//   - Every problem is one Finding with a Level, a stable What (the record or
//     name checked), a one-sentence Finding and, unless Level is OK, a Fix
//     that names the action, with the record to publish in zone-file form
//     where one applies.
//   - A resolver that does not answer yields exactly one FAIL and no other
//     finding, never a flood of per-record failures.
//   - All queries go to Checker.Resolver (UDP, retried over TCP when the
//     answer is truncated, RFC 1035 §4.2.1 / RFC 7766), each bounded by
//     Checker.Timeout and by the caller's context. Answers are cached for the
//     duration of one Run only; there is no package-level state.
//   - The SPF evaluator is a deliberately small subset of RFC 7208 check_host:
//     ip4, ip6, a, mx, include, redirect= and all are evaluated; exists, ptr
//     and macros are treated as "not matching" and noted. The RFC 7208 §4.6.4
//     limit of 10 DNS-querying terms is enforced (the limit of 2 void
//     lookups is not).
//   - The DMARC organizational domain is found by stripping the leftmost
//     label once, not through the Public Suffix List (RFC 7489 §3.2).
//
// Input.Now is carried for callers and future time-dependent checks; no
// check reads the clock. CheckClock compares two times the caller supplies.
package dnscheck
