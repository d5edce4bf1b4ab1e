package main

import (
	"context"
	"fmt"
	"testing"

	"relayd/metrics"
	"relayd/upstream"
)

// TestClassifyUpstream: a hung session (a timeout after the greeting)
// counts as a connection failure, and a delivery skipped because the
// credentials are in backoff is no new AUTH failure (issue 20 item 7).
func TestClassifyUpstream(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&upstream.Error{Stage: upstream.StageConnect}, metrics.FailConnection},
		{&upstream.Error{Stage: upstream.StageMail, Err: fmt.Errorf("read: %w", context.DeadlineExceeded)}, metrics.FailConnection},
		{&upstream.Error{Stage: upstream.StageAuth, Code: 535}, metrics.FailAuth},
		{&upstream.Error{Stage: upstream.StageAuth, Code: 535, Err: upstream.ErrAuthBackoff}, ""},
		{&upstream.Error{Stage: upstream.StageData, Code: 421}, ""},
	} {
		if got := classifyUpstream(tc.err); got != tc.want {
			t.Errorf("classifyUpstream(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
