package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"relayd/auth"
	"relayd/cleanup"
	"relayd/conf"
	"relayd/control"
	"relayd/internal/sysexits"
	"relayd/metrics"
	"relayd/notify"
	"relayd/pickup"
	"relayd/queue"
	"relayd/signer"
	"relayd/smtpd"
	"relayd/upstream"
)

// stopGrace is how long sessions and deliveries in flight may take to
// finish after SIGTERM before their connections are closed.
const stopGrace = 20 * time.Second

// gcPercent is the garbage collector's target (GOGC) unless set in the
// environment; see runServe.
const gcPercent = 200

func runServe(args []string, stderr io.Writer) int {
	fs := flagSet("serve", stderr)
	cfgFlag := fs.String("config", "", "config `FILE` (default $RELAYD_CONFIG or "+defaultConfigPath+")")
	if err := fs.Parse(args); err != nil {
		return sysexits.Usage
	}
	if os.Getenv("GOGC") == "" {
		// relayd's live heap is a few MB and does not grow with the load
		// or the queue, so a higher target trades a little memory for
		// fewer collections (figures: bench/README.md, "Costs behind the
		// code"). GOGC in the environment still decides.
		debug.SetGCPercent(gcPercent)
	}
	path := configPath(*cfgFlag)
	d, err := newDaemon(path, stderr)
	if err != nil {
		return sysexits.Config
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.run(ctx); err != nil {
		d.log.Error("relayd stopped", "err", err)
		return exitFailure
	}
	return sysexits.OK
}

// daemon is one running relayd: the pipeline listener -> cleanup -> signer
// -> queue -> upstream, and what steers it.
type daemon struct {
	path    string
	stderr  io.Writer
	log     *slog.Logger   // the daemon's own lines: component=relayd
	root    *slog.Logger   // what each package's logger is built from (logging.go)
	level   *slog.LevelVar // [log] level, changed by reload
	metrics *metrics.Metrics

	reloadMu sync.Mutex // one reload at a time
	mu       sync.Mutex // guards cfg, up across reloads
	cfg      *conf.Config
	up       *upstream.Client
	hosts    map[string]*upstream.Client // [[smarthost]] by name
	q        *queue.Queue
	sign     *signer.Signer
	intake   *cleanup.Cleanup
	servers  []*smtpd.Server
	lis      []net.Listener
	auth     *auth.Authenticator
	// cert is the listeners' certificate; a reload swaps it and new TLS
	// handshakes use the new one.
	cert atomic.Pointer[tls.Certificate]
}

// components is everything built from one config; reload builds a new set
// and swaps it in only when all of it is valid.
type components struct {
	cfg   *conf.Config
	sign  *signer.Signer
	up    *upstream.Client // nil: hold mail
	hosts map[string]*upstream.Client
	cert  *tls.Certificate // listener certificate, nil when not configured
	auth  *auth.Authenticator
}

// build validates cfg fully (keys, certificates, smarthost settings) and
// returns every problem at once.
func build(cfg *conf.Config, log *slog.Logger) (*components, []error) {
	var errs []error
	c := &components{cfg: cfg}
	sign, kerrs := signer.Load(dkimEntries(cfg.DKIM), signer.Options{Logger: component(log, compSigner)})
	for _, e := range kerrs {
		// FILE: KEY: problem, as every config problem (README).
		errs = append(errs, fmt.Errorf("%s: %w", cfg.Source, e))
	}
	c.sign = sign
	if cfg.Listen.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Listen.TLSCert, cfg.Listen.TLSKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: listen.tls_cert/listen.tls_key: %w", cfg.Source, err))
		} else {
			c.cert = &cert
		}
	}
	if len(cfg.Users) > 0 {
		c.auth = auth.New(authUsers(cfg.Users), auth.Options{})
	}
	if !cfg.Upstream.Hold() {
		up, err := newUpstream(cfg, log)
		if err != nil {
			errs = append(errs, err)
		}
		c.up = up
	}
	hosts, herrs := buildSmarthosts(cfg, log) // routes.go
	c.hosts = hosts
	errs = append(errs, herrs...)
	return c, errs
}

func newUpstream(cfg *conf.Config, log *slog.Logger) (*upstream.Client, error) {
	u := cfg.Upstream
	roots, err := upstream.LoadCAFile(u.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s: upstream.ca_file: %w", cfg.Source, err)
	}
	var tokens upstream.TokenSource
	if u.OAuth() {
		ts, err := newTokenSource(cfg, component(log, compOAuth2)) // oauth2.go
		if err != nil {
			return nil, err
		}
		tokens = ts
	}
	up, err := upstream.New(upstream.Config{
		Address:    u.Address,
		Fallback:   u.Fallback,
		TLS:        u.TLS,
		RootCAs:    roots,
		Hostname:   cfg.Hostname,
		NullSender: u.NullSender,
		Username:   u.Username,
		Password:   u.Password,
		Auth:       u.Auth,
		Tokens:     tokens,
		Timeout:    u.Timeout.Duration,
		MaxConns:   cfg.Queue.Concurrency,
		MinBackoff: cfg.Queue.MinBackoff.Duration,
		MaxBackoff: cfg.Queue.MaxBackoff.Duration,
		Logger:     component(log, compUpstream),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: upstream: %w", cfg.Source, err)
	}
	return up, nil
}

func newDaemon(path string, stderr io.Writer) (*daemon, error) {
	cfg, ok := loadConfig(path, stderr)
	if !ok {
		return nil, errors.New("bad config")
	}
	d := &daemon{path: path, stderr: stderr, cfg: cfg, level: new(slog.LevelVar)}
	// The metrics count mail log events, so they wrap the log handler.
	d.metrics = metrics.New(metrics.Options{Version: version, Stats: d.queueStats})
	d.level.Set(logLevel(cfg.Log))
	d.root = slog.New(d.metrics.LogHandler(newHandler(cfg.Log, stderr, d.level)))
	d.log = component(d.root, compRelayd)
	comp, errs := build(cfg, d.root)
	if len(errs) > 0 {
		printProblems(stderr, path, errors.Join(errs...))
		return nil, errors.New("bad config")
	}
	d.up, d.hosts, d.sign, d.auth = comp.up, comp.hosts, comp.sign, comp.auth
	d.cert.Store(comp.cert)
	return d, nil
}

func (d *daemon) run(ctx context.Context) error {
	// SIGHUP is caught from the start: its default action would kill the
	// daemon if it arrived while listeners are being set up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg := d.cfg
	qcfg := queue.Config{
		Dir:          cfg.StateDir,
		MinBackoff:   cfg.Queue.MinBackoff.Duration,
		MaxBackoff:   cfg.Queue.MaxBackoff.Duration,
		MaxAge:       cfg.Queue.MaxAge.Duration,
		DelayWarning: cfg.Queue.DelayWarning.Duration,
		Concurrency:  cfg.Queue.Concurrency,
		MinFreeBytes: cfg.Queue.MinFreeBytes,
		Flush:        cfg.Queue.Flush,
		FlushForce:   cfg.Queue.FlushForce,
		Logger:       component(d.root, compQueue),
		RateLimit:    rateLimit(cfg),
	}
	qcfg.Deliverer = d.deliverer(d.up)
	qcfg.Routes = d.newRouter(cfg, d.hosts)
	nt := &notify.Notifier{Hostname: cfg.Hostname, Clock: time.Now, Logger: component(d.root, compNotify), NullSender: func() string {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.cfg.Upstream.NullSender
	}}
	qcfg.Notifier = nt
	q, err := queue.Open(qcfg)
	if err != nil {
		return stateDirError(cfg.StateDir, err)
	}
	defer q.Close()
	d.q = q
	importOldSpool(q, cfg.StateDir, d.log)
	mctx, mstop := context.WithCancel(context.Background())
	defer mstop()
	if err := d.serveMetrics(mctx); err != nil {
		return err
	}
	d.intake = cleanup.New(d.cleanupConfig(cfg))
	nt.Intake = d.intake

	if err := d.listen(); err != nil {
		return listenError(err)
	}
	go d.logUnsigned(d.sign) // held mail a new key could sign (issue 16)
	if rl := rateLimit(cfg); rl != (queue.RateLimit{}) {
		d.log.Info("outbound rate limit", "limit", rl.String())
	}

	qctx, qstop := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- q.Run(qctx) }()

	pctx, pstop := context.WithCancel(context.Background())
	defer pstop()
	pk := pickup.New(pickup.Config{Dir: filepath.Join(cfg.StateDir, "maildrop"), Corrupt: filepath.Join(cfg.StateDir, "corrupt"),
		Intake: d.intake, Notify: nt.Notify, Logger: component(d.root, compPickup)})
	go pk.Run(pctx)

	sdNotify("READY=1")
	d.log.Info("relayd started", "version", version, "config", orDefaults(d.path), "hostname", cfg.Hostname)
	logConfigWarnings(d.log, cfg)

	for {
		select {
		case <-hup:
			d.reload()
			continue
		case err := <-qdone:
			qstop()
			d.shutdownListeners()
			return fmt.Errorf("queue stopped: %w", err)
		case <-ctx.Done():
		}
		break
	}
	sdNotify("STOPPING=1")
	d.log.Info("stopping: no new connections; finishing sessions and deliveries in flight")
	d.shutdownListeners()
	pstop()
	qstop()
	err = <-qdone
	if d.up != nil {
		d.up.Close()
	}
	mstop()
	d.log.Info("relayd stopped")
	return err
}

func (d *daemon) cleanupConfig(cfg *conf.Config) cleanup.Config {
	var s cleanup.Signer
	if d.sign != nil {
		s = d.sign
	}
	local := localDomains(cfg, cleanup.OSHost(conf.HostFQDN))
	d.log.Info("local domains: mail to these goes to rewrite.admin, mail from them is sent as rewrite.sender",
		"hostname", cfg.Hostname, "local_domains", local)
	return cleanup.Config{
		Hostname:        cfg.Hostname,
		LocalDomains:    local,
		Spool:           cleanup.SpoolOf(d.q.Create),
		Signer:          s,
		MaxMessageBytes: cfg.Listen.MaxMessageBytes,
		Admin:           cfg.Rewrite.Admin,
		Sender:          cfg.Rewrite.Sender,
		SevenBitOnly:    d.sevenBitOnly(cfg), // localnames.go
		Route:           routeFunc(cfg),      // routes.go
		Identity:        identityFunc(cfg),   // routes.go
		Logger:          component(d.root, compCleanup),
	}
}

func (d *daemon) settings(cfg *conf.Config) smtpd.Settings {
	st := smtpd.Settings{
		RelayNets:       cfg.RelayNets(),
		MaxMessageBytes: cfg.Listen.MaxMessageBytes,
		MaxRecipients:   cfg.Listen.MaxRecipients,

		MaxMessagesPerMinutePerIP: cfg.Listen.MaxMessagesPerMinutePerIP,
	}
	if d.auth != nil {
		st.Auth = d.auth
	}
	return st
}

// tlsConfig serves the current certificate (reloaded on SIGHUP), or nil
// when none is configured.
func (d *daemon) tlsConfig() *tls.Config {
	if d.cert.Load() == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return d.cert.Load(), nil
		},
	}
}

// listen binds every configured listener, or fails naming the address.
func (d *daemon) listen() error {
	cfg := d.cfg
	// listen.max_connections is one budget for every TCP listener; the
	// sendmail command's socket has its own, counted per local uid, so
	// neither a network flood nor one local user can lock the others out
	// (and the sendmail command falls back to the maildrop anyway).
	tcpLimits := smtpd.NewConnLimits(cfg.Listen.MaxConnections, cfg.Listen.MaxConnectionsPerIP)
	localLimits := smtpd.NewConnLimits(cfg.Listen.MaxConnections, cfg.Listen.MaxConnectionsPerIP)
	mk := func(mode smtpd.Mode) *smtpd.Server {
		limits := tcpLimits
		if mode == smtpd.Local {
			limits = localLimits
		}
		s := smtpd.New(smtpd.Config{
			Hostname:    cfg.Hostname,
			Mode:        mode,
			TLS:         d.tlsConfig(),
			IdleTimeout: cfg.Listen.IdleTimeout.Duration,
			Limits:      limits,
			Resolver:    net.DefaultResolver,
			Logger:      component(d.root, compSmtpd),
			Settings:    d.settings(cfg),
		}, d.intake)
		d.servers = append(d.servers, s)
		return s
	}
	serve := func(s *smtpd.Server, l net.Listener) {
		d.lis = append(d.lis, l)
		go func() {
			if err := s.Serve(l); err != nil {
				d.log.Error("listener failed", "addr", l.Addr(), "err", err)
			}
		}()
	}
	relay := mk(smtpd.Relay)
	for _, addr := range cfg.Listen.SMTP {
		l, err := listenSMTP(addr)
		if err != nil {
			if isLoopbackV6Unavailable(addr, err) {
				d.log.Warn("skipping listener: IPv6 loopback not available", "addr", addr)
				continue
			}
			d.shutdownListeners()
			return fmt.Errorf("listen.smtp %s: %w", addr, err)
		}
		d.log.Info("listening", "addr", l.Addr().String(), "mode", "smtp")
		serve(relay, l)
	}
	for _, l := range []struct {
		addrs []string
		mode  smtpd.Mode
		name  string
	}{{cfg.Listen.Submission, smtpd.Submission, "submission"}, {cfg.Listen.Submissions, smtpd.Submissions, "submissions"}} {
		if len(l.addrs) == 0 {
			continue
		}
		srv := mk(l.mode)
		for _, addr := range l.addrs {
			ln, err := listenSMTP(addr)
			if err != nil {
				d.shutdownListeners()
				return fmt.Errorf("listen.%s %s: %w", l.name, addr, err)
			}
			d.log.Info("listening", "addr", ln.Addr().String(), "mode", l.name)
			serve(srv, ln)
		}
	}

	cl, err := control.Listen(cfg.StateDir)
	if err != nil {
		d.shutdownListeners()
		return err
	}
	d.lis = append(d.lis, cl)
	go control.Serve(cl, controlHandler{d}, component(d.root, compControl))

	sock := filepath.Join(cfg.StateDir, "public", "submit.sock")
	l, err := listenUnixMode(sock, 0o666) // any local user may submit, as with sendmail
	if err != nil {
		d.shutdownListeners()
		return fmt.Errorf("local submission socket %s: %w", sock, err)
	}
	serve(mk(smtpd.Local), l)
	return nil
}

func isLoopbackV6Unavailable(addr string, err error) bool {
	host, _, _ := net.SplitHostPort(addr)
	return host == "::1" && errors.Is(err, syscall.EADDRNOTAVAIL)
}

func (d *daemon) shutdownListeners() {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range d.servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Shutdown(ctx) }()
	}
	wg.Wait()
	for _, l := range d.lis {
		l.Close() // the control socket; smtpd closed its own
	}
}

// reload re-reads the config; a broken one is rejected with every error
// listed and the running one is kept.
func (d *daemon) reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	// sd_notify(3): RELOADING=1 carries MONOTONIC_USEC (systemd >= 253
	// uses it to tell this reload from an earlier one).
	sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer sdNotify("READY=1")
	d.log.Info("reloading configuration", "config", orDefaults(d.path))
	cfg, err := conf.Load(d.path)
	if err != nil {
		return d.rejectReload(err)
	}
	comp, errs := build(cfg, d.root)
	if len(errs) > 0 {
		if comp.up != nil {
			comp.up.Close() // stops its token source's keep-alive refreshes
		}
		closeAll(comp.hosts)
		return d.rejectReload(errors.Join(errs...))
	}
	d.warnRestartOnly(cfg)
	logConfigWarnings(d.log, cfg)
	d.mu.Lock()
	old, oldHosts := d.up, d.hosts
	upstreamChanged := !reflect.DeepEqual(d.cfg.Upstream, cfg.Upstream)
	routed := routesChanged(d.cfg, cfg)
	d.cfg, d.up, d.hosts, d.sign, d.auth = cfg, comp.up, comp.hosts, comp.sign, comp.auth
	d.mu.Unlock()
	if comp.cert != nil {
		d.cert.Store(comp.cert)
	}
	d.q.SetDeliverer(d.deliverer(comp.up))
	d.q.SetRoutes(d.newRouter(cfg, comp.hosts))
	if upstreamChanged && comp.up != nil || routed {
		// A fixed password or address: deferred mail goes now, not at
		// each message's next retry (the "instant drain"). New routes:
		// every queued message is routed again at once.
		d.q.TransportChanged()
	}
	d.q.SetRateLimit(rateLimit(cfg))
	// The spool's path may lead to another filesystem now: choose the
	// flush again (queue.flush itself changes only at restart).
	if _, err := d.q.RecheckFlush(); err != nil {
		d.log.Error("reload: flush mode", "err", err)
	}
	d.level.Set(logLevel(cfg.Log))
	d.intake.Update(d.cleanupConfig(cfg))
	for _, s := range d.servers {
		s.Update(d.settings(cfg))
	}
	if old != nil {
		old.Close()
	}
	closeAll(oldHosts)
	d.metrics.Reload(true)
	d.log.Info("configuration reloaded")
	return nil
}

// logConfigWarnings logs what conf finds suspicious but not fatal.
func logConfigWarnings(log *slog.Logger, cfg *conf.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("configuration warning", "warning", w)
	}
}

func orDefaults(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}

// sdNotify tells systemd about state changes (Type=notify); a no-op
// outside systemd.
func sdNotify(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// rejectReload logs every problem of a refused config, one line each, and
// returns them joined (relayd reload prints them).
func (d *daemon) rejectReload(err error) error {
	d.metrics.Reload(false)
	for _, p := range problemList(err) {
		d.log.Error("reload rejected: config problem", "problem", p.Error())
	}
	d.log.Error("reload rejected, keeping the running configuration", "config", orDefaults(d.path))
	return err
}

// problemList flattens joined errors (conf.Errors, errors.Join).
func problemList(err error) []error {
	var list interface{ Unwrap() []error }
	if errors.As(err, &list) {
		var out []error
		for _, e := range list.Unwrap() {
			out = append(out, problemList(e)...)
		}
		return out
	}
	return []error{err}
}

// warnRestartOnly names settings a reload cannot change: listeners and the
// spool stay as they are (no listener is ever dropped by a reload).
func (d *daemon) warnRestartOnly(cfg *conf.Config) {
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	for _, c := range []struct {
		key      string
		old, new any
	}{
		{"state_dir", old.StateDir, cfg.StateDir},
		{"listen.smtp", old.Listen.SMTP, cfg.Listen.SMTP},
		{"listen.submission", old.Listen.Submission, cfg.Listen.Submission},
		{"listen.submissions", old.Listen.Submissions, cfg.Listen.Submissions},
		{"metrics.listen", old.Metrics.Listen, cfg.Metrics.Listen},
		{"log.format", old.Log.Format, cfg.Log.Format},
		{"queue", old.Queue, cfg.Queue},
		{"hostname", old.Hostname, cfg.Hostname},
	} {
		if fmt.Sprint(c.old) != fmt.Sprint(c.new) {
			d.log.Warn("reload: this setting changes only at restart", "key", c.key)
		}
	}
}

// deliverer wraps the smarthost client for metrics; nil holds mail.
func (d *daemon) deliverer(up *upstream.Client) queue.Deliverer {
	if up == nil {
		return nil
	}
	return d.metrics.Deliverer(up, classifyUpstream)
}

// classifyUpstream sorts a smarthost failure for the metrics.
func classifyUpstream(err error) string {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return ""
	}
	if errors.Is(ue, upstream.ErrAuthBackoff) {
		return "" // no login was tried: the credentials are in backoff
	}
	switch ue.Stage {
	case upstream.StageConnect, upstream.StageGreeting, upstream.StageEHLO, upstream.StageSTARTTLS, upstream.StageTLS:
		return metrics.FailConnection
	case upstream.StageAuth:
		return metrics.FailAuth
	}
	if ue.Timeout() {
		return metrics.FailConnection // a hung session is a smarthost failure too
	}
	return ""
}

func rateLimit(cfg *conf.Config) queue.RateLimit {
	u := cfg.Upstream
	return queue.RateLimit{PerMinute: u.MaxPerMinute, PerHour: u.MaxPerHour, PerDay: u.MaxPerDay}
}

// queueStats feeds the metrics; the queue is open before the metrics
// listener starts.
func (d *daemon) queueStats() metrics.QueueStats {
	if d.q == nil {
		return metrics.QueueStats{}
	}
	st := d.q.Stats()
	return metrics.QueueStats{Messages: st.Messages, Held: st.Held, Oldest: st.Oldest, Quarantined: st.Quarantined}
}

// listenSMTP opens an SMTP listener whose connections get no TCP
// keepalive: every read and write has the idle deadline
// (listen.idle_timeout), which ends a dead client's session, and enabling
// the probes costs four setsockopt(2) calls per connection (bench/README.md,
// "Costs behind the code"). Postfix's smtpd does not enable them either.
func listenSMTP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// serveMetrics starts the Prometheus endpoint on [metrics] listen, if set.
func (d *daemon) serveMetrics(ctx context.Context) error {
	addr := d.cfg.Metrics.Listen
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	d.log.Info("listening", "addr", l.Addr().String(), "mode", "metrics")
	go d.metrics.Serve(ctx, l, component(d.root, compMetrics))
	return nil
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as sd_notify's
// MONOTONIC_USEC wants.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
