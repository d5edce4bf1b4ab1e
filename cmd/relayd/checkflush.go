package main

import (
	"errors"
	"os"
	"path/filepath"

	"relayd/conf"
	"relayd/queue"
)

// flushMode reports how commits will reach stable storage on state_dir's
// filesystem (queue.flush, see queue.ChooseFlush): relayd serve refuses
// to start where it fails here.
func (c *checker) flushMode(cfg *conf.Config) {
	what := "queue.flush"
	existing := cfg.StateDir // the spool, or the directory it will be made in
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	fi, err := queue.ChooseFlush(existing, cfg.Queue.Flush, cfg.Queue.FlushForce)
	switch {
	case errors.Is(err, queue.ErrFlushRefused):
		c.fail(what, `set queue.flush = "auto" (or "fdatasync")`, "%v", err)
	case err != nil:
		c.warn(what, "check the filesystem holding "+existing, "cannot tell the filesystem type: %v", err)
	case fi.Warning != "":
		c.warn(what, `use "auto" unless you know the filesystem honours syncfs, and keep the spool on stable storage`,
			"%s on %s: %s (%s)", fi.Mode, fi.FS, fi.Warning, fi.Reason)
	default:
		c.ok(what, "%s on %s: %s", fi.Mode, fi.FS, fi.Reason)
	}
}
