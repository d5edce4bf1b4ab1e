package main

import (
	"log/slog"
	"reflect"

	"relayd/conf"
	"relayd/queue"
	"relayd/route"
	"relayd/upstream"
)

// router is the queue's Routes: the [[route]] matcher and one
// upstream.Client per [[smarthost]] (each its own pool, health, AUTH
// backoff), wrapped for the metrics with smarthost=NAME. The default
// smarthost ([upstream]) stays the queue's Deliverer.
type router struct {
	match  *route.Matcher
	hosts  map[string]queue.Deliverer
	limits map[string]queue.RateLimit
}

var _ queue.Routes = (*router)(nil)

func (r *router) Route(from, fromDomain, rcpt string) string {
	return r.match.Match(from, fromDomain, rcpt)
}

func (r *router) Deliverer(name string) queue.Deliverer { return r.hosts[name] }

func (r *router) RateLimit(name string) queue.RateLimit { return r.limits[name] }

// forSmarthost is cfg with [upstream] replaced by the smarthost s, so the
// code written for [upstream] (client, token source, check) serves s too.
func forSmarthost(cfg *conf.Config, s conf.Smarthost) *conf.Config {
	c := *cfg
	c.Upstream = s.Upstream
	return &c
}

// buildSmarthosts makes a client for every [[smarthost]].
func buildSmarthosts(cfg *conf.Config, log *slog.Logger) (map[string]*upstream.Client, []error) {
	var errs []error
	hosts := map[string]*upstream.Client{}
	for _, s := range cfg.Smarthosts {
		up, err := newUpstream(forSmarthost(cfg, s), log.With("smarthost", s.Name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hosts[s.Name] = up
	}
	return hosts, errs
}

// newRouter is the queue's Routes for cfg, nil when there are no routes
// (everything goes through [upstream], as before routes existed).
func (d *daemon) newRouter(cfg *conf.Config, hosts map[string]*upstream.Client) queue.Routes {
	if len(cfg.Routes) == 0 {
		return nil
	}
	r := &router{match: route.New(cfg.Routes), hosts: map[string]queue.Deliverer{}, limits: map[string]queue.RateLimit{}}
	for _, s := range cfg.Smarthosts {
		if up := hosts[s.Name]; up != nil {
			r.hosts[s.Name] = d.metrics.SmarthostDeliverer(s.Name, up, classifyUpstream)
		}
		r.limits[s.Name] = queue.RateLimit{PerMinute: s.MaxPerMinute, PerHour: s.MaxPerHour, PerDay: s.MaxPerDay}
	}
	return r
}

// routesChanged reports whether a reload changed routes or smarthosts.
func routesChanged(old, cfg *conf.Config) bool {
	return !reflect.DeepEqual(old.Routes, cfg.Routes) || !reflect.DeepEqual(old.Smarthosts, cfg.Smarthosts)
}

func closeAll(hosts map[string]*upstream.Client) {
	for _, up := range hosts {
		up.Close()
	}
}

// identityFunc is cleanup's Identity: the from of the smarthost a queue
// entry's recipients take. cleanup splits a message per smarthost
// (routeFunc), so they take one; should routes diverge within an entry
// (never at intake), the first recipient whose smarthost has a from
// decides (one message has one From field). nil when no [[smarthost]]
// sets from.
func identityFunc(cfg *conf.Config) func(from, fromDomain string, rcpts []string) string {
	ids := map[string]string{}
	for _, s := range cfg.Smarthosts {
		if s.From != "" {
			ids[s.Name] = s.From
		}
	}
	if len(ids) == 0 || len(cfg.Routes) == 0 {
		return nil
	}
	m := route.New(cfg.Routes)
	return func(from, fromDomain string, rcpts []string) string {
		for _, r := range rcpts {
			if id := ids[m.Match(from, fromDomain, r)]; id != "" {
				return id
			}
		}
		return ""
	}
}

// routeFunc is cleanup's Route: the smarthost a recipient takes under
// cfg's routes, so that intake splits a message per smarthost; nil
// without routes (every recipient takes [upstream]: nothing to split).
func routeFunc(cfg *conf.Config) func(from, fromDomain, rcpt string) string {
	if len(cfg.Routes) == 0 {
		return nil
	}
	return route.New(cfg.Routes).Match
}

// routeOf names the smarthost a queued recipient takes under cfg's routes,
// as the queue routes it at its next attempt; nil without routes (queue
// list then shows no smarthost, as before routes existed).
func routeOf(cfg *conf.Config) func(m *queue.Meta, rcpt string) string {
	if len(cfg.Routes) == 0 {
		return nil
	}
	match := route.New(cfg.Routes)
	return func(m *queue.Meta, rcpt string) string {
		from := m.From
		if m.RouteSender != "" {
			from = m.RouteSender
		}
		return match.Match(from, m.FromDomain, rcpt)
	}
}
