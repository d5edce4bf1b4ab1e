// Package systemd holds relayd's systemd integration files, shipped by the
// Debian package and the appliance image, and the tests that keep them honest:
//
//   - relayd.service: the hardened unit (Type=notify, user relayd, only
//     CAP_NET_BIND_SERVICE, StateDirectory=relayd, the smarthost password as
//     the credential "smarthost");
//   - relayd.sysusers: the relayd user and group (sysusers.d(5));
//   - relayd.tmpfiles: the spool /var/lib/relayd (0711) with maildrop/ (1733)
//     and public/ (0755), owned by relayd (tmpfiles.d(5)).
//
// Invariants checked by the tests: `systemd-analyze security --offline=true`
// rates the unit's exposure at 2.0 or less; the unit's StateDirectory= is the
// state_dir of the packaged config (packaging/relayd.toml), which conf loads
// without error; the tmpfiles modes are the ones the sendmail command relies
// on; PrivateUsers= stays off because it would void CAP_NET_BIND_SERVICE in
// the host's network namespace.
//
// The package has no Go API: it exists so that `go test ./systemd/` runs
// these checks with the rest of the suite.
package systemd
