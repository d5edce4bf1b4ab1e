package smtpd

import (
	"net/netip"
	"strconv"
	"sync"
)

// ConnLimits caps concurrent connections overall and per client, across
// every listener that shares it: listen.max_connections is one budget for
// all TCP listeners together, not one per address. A client is an IP
// address on TCP, and a peer uid (SO_PEERCRED) on the Unix socket of the
// sendmail command, so one local user cannot take every slot there.
type ConnLimits struct {
	max, maxPer int // 0: no cap

	mu    sync.Mutex
	total int
	per   map[client]int
}

// client is what a per-client limit counts: an IP, or a local uid.
type client struct {
	ip  netip.Addr
	uid int // -1 unless on the Unix socket
}

func (k client) String() string {
	if k.ip.IsValid() {
		return k.ip.String()
	}
	return "uid " + strconv.Itoa(k.uid)
}

// NewConnLimits returns limits of max connections overall and maxPerClient
// per IP or local uid (0: no cap).
func NewConnLimits(max, maxPerClient int) *ConnLimits {
	return &ConnLimits{max: max, maxPer: maxPerClient, per: map[client]int{}}
}

// acquire takes a slot for k, or returns why not.
func (l *ConnLimits) acquire(k client) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return "Too many connections"
	}
	counted := k.ip.IsValid() || k.uid >= 0
	if l.maxPer > 0 && counted && l.per[k] >= l.maxPer {
		return "Too many connections from " + k.String()
	}
	l.total++
	if counted {
		l.per[k]++
	}
	return ""
}

func (l *ConnLimits) release(k client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if k.ip.IsValid() || k.uid >= 0 {
		if l.per[k]--; l.per[k] <= 0 {
			delete(l.per, k)
		}
	}
}
