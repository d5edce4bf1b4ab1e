package queue

import (
	"testing"

	"relayd/internal/defaults"
)

// A Config used directly (not through conf) gets the values conf fills in
// for a config file without a [queue] section: setDefaults must agree with
// internal/defaults, where conf takes them from, until it uses them itself.
func TestDefaultsAgreeWithConf(t *testing.T) {
	c := Config{}
	setDefaults(&c)
	if c.MinBackoff != defaults.MinBackoff || c.MaxBackoff != defaults.MaxBackoff ||
		c.MaxAge != defaults.MaxAge || c.Concurrency != defaults.Concurrency {
		t.Errorf("queue defaults %v %v %v %d, conf's %v %v %v %d", c.MinBackoff, c.MaxBackoff, c.MaxAge, c.Concurrency,
			defaults.MinBackoff, defaults.MaxBackoff, defaults.MaxAge, defaults.Concurrency)
	}
}
