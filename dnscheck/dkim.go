package dnscheck

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// dkimRecordName is where verifiers look for a key (RFC 6376 §3.6.2.1).
func dkimRecordName(k DKIMKey) string {
	return bare(k.Selector) + "._domainkey." + bare(k.Domain)
}

// DKIMRecord renders the TXT record that publishes k, in zone-file form,
// with every character-string at most 255 octets.
func DKIMRecord(k DKIMKey) string {
	alg := strings.ToLower(k.Algorithm)
	if alg == "" {
		alg = "rsa"
	}
	return txtRecord(dkimRecordName(k), "v=DKIM1; k="+alg+"; ", "p="+stripSpace(k.PublicKey))
}

// checkDKIM verifies that k's public key is published and usable
// (RFC 6376 §3.6.1 key record tags).
func (ru *run) checkDKIM(ctx context.Context, k DKIMKey) {
	what := "DKIM " + dkimRecordName(k)
	f, err := ru.dkimFinding(ctx, what, k)
	if err != nil {
		ru.lookupFailed(what, err)
		return
	}
	ru.add(f)
}

func (ru *run) dkimFinding(ctx context.Context, what string, k DKIMKey) (Finding, error) {
	name := dkimRecordName(k)
	publish := "publish " + DKIMRecord(k)
	txts, err := ru.r.txt(ctx, name)
	if err != nil {
		return Finding{}, err
	}
	var recs []string
	for _, t := range txts {
		if looksLikeDKIM(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		if len(txts) > 0 {
			return newFail(what, publish, "the TXT record at %s is not a DKIM key record: %q", name, abbrev(txts[0])), nil
		}
		return newFail(what, publish, "no DKIM key record at %s, so receivers cannot verify relayd's signatures", name), nil
	case 1:
	default:
		return newFail(what, "keep only one key record: "+DKIMRecord(k),
			"%d TXT records at %s; verifiers may pick either (RFC 6376 §3.6.2.2)", len(recs), name), nil
	}
	tags, err := parseTags(recs[0])
	if err != nil {
		return newFail(what, "replace it with "+DKIMRecord(k), "record does not parse: %v", err), nil
	}
	if v, ok := tagValue(tags, "v"); ok && (tags[0].name != "v" || v != "DKIM1") {
		// RFC 6376 §3.6.1: v= is optional, but if present it MUST be the
		// first tag and be exactly "DKIM1".
		return newFail(what, "replace it with "+DKIMRecord(k),
			"v=%s must be the first tag and read v=DKIM1 (RFC 6376 §3.6.1), otherwise verifiers discard the key", v), nil
	}
	p, ok := tagValue(tags, "p")
	if !ok {
		return newFail(what, "replace it with "+DKIMRecord(k), "record has no p= tag, so it holds no key"), nil
	}
	p = stripSpace(p)
	if p == "" {
		return newFail(what, "if the key was revoked on purpose, configure a new selector; otherwise "+publish,
			"p= is empty: the key is revoked (RFC 6376 §3.6.1) and every signature with it fails"), nil
	}
	kt, ok := tagValue(tags, "k")
	if !ok {
		kt = "rsa" // RFC 6376 §3.6.1 default
	}
	alg := strings.ToLower(k.Algorithm)
	if alg == "" {
		alg = "rsa"
	}
	if !strings.EqualFold(kt, alg) {
		return newFail(what, "replace it with "+DKIMRecord(k),
			"record says k=%s but the configured key is %s, so verification fails", kt, alg), nil
	}
	want := stripSpace(k.PublicKey)
	if p != want {
		detail := ""
		switch {
		case strings.HasPrefix(want, p):
			detail = fmt.Sprintf(" (published p= has %d of %d characters: truncated)", len(p), len(want))
		case !validBase64(p):
			detail = " (published p= is not valid base64)"
		}
		return newFail(what, "replace it with "+DKIMRecord(k),
			"published key does not match the private key (republished key? truncated record? wrong selector?)%s", detail), nil
	}
	if t, ok := tagValue(tags, "t"); ok && containsFlag(t, "y") {
		return newWarn(what, "remove t=y once signatures verify: "+DKIMRecord(k),
			"key is in testing mode (t=y): verifiers may ignore failures and DMARC may not rely on it (RFC 6376 §3.6.1)"), nil
	}
	return newOK(what, "key published (k=%s) and matches the configured private key", alg), nil
}

func looksLikeDKIM(s string) bool {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "v=DKIM1") {
		return true
	}
	tags, err := parseTags(t)
	if err != nil {
		return strings.Contains(t, "p=")
	}
	_, hasP := tagValue(tags, "p")
	return hasP
}

func containsFlag(list, flag string) bool {
	for _, f := range strings.Split(list, ":") {
		if strings.TrimSpace(f) == flag {
			return true
		}
	}
	return false
}

func stripSpace(s string) string {
	return strings.Join(strings.Fields(s), "")
}

func validBase64(s string) bool {
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

func abbrev(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
