// Package conf holds relayd's configuration: the TOML types, their defaults,
// and validation that reports every problem at once, naming file and key.
//
// Invariants: a *Config returned by Load has passed Validate, has every
// default filled in, and every duration is a time.Duration (TOML strings such
// as "90s", "15m", "4h" or "5d"), relay networks are normalised CIDR
// prefixes, and Upstream.Password holds the smarthost password when
// upstream.username is set. Load and Parse fail with Errors, listing every
// problem as "FILE: KEY: problem". The password is never printed: Upstream
// redacts it in String, GoString and LogValue and has no JSON or TOML key.
// Nothing here touches DKIM keys or TLS files; their owners load them.
package conf

import "time"

// Config is the whole relayd.toml.
type Config struct {
	Hostname string `toml:"hostname"`  // EHLO name, Received, Message-ID domain
	StateDir string `toml:"state_dir"` // the spool

	Listen   Listen   `toml:"listen"`
	Users    []User   `toml:"users"`
	Upstream Upstream `toml:"upstream"`
	// Smarthosts and Routes choose another smarthost than [upstream] per
	// message (routes.go).
	Smarthosts []Smarthost `toml:"smarthost"`
	Routes     []Route     `toml:"route"`
	Queue      Queue       `toml:"queue"`
	DKIM       []DKIM      `toml:"dkim"`
	Rewrite    Rewrite     `toml:"rewrite"`
	Metrics    Metrics     `toml:"metrics"`
	Log        Log         `toml:"log"`

	// Source is the file this config was read from ("" for built-in defaults).
	Source string `toml:"-"`
}

// Listen configures the SMTP listeners.
type Listen struct {
	SMTP            []string `toml:"smtp"`        // plain SMTP for local applications
	Submission      []string `toml:"submission"`  // STARTTLS + AUTH required
	Submissions     []string `toml:"submissions"` // implicit TLS + AUTH required
	RelayNetworks   []string `toml:"relay_networks"`
	TLSCert         string   `toml:"tls_cert"`
	TLSKey          string   `toml:"tls_key"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	// IdleTimeout drops a client that sends or reads nothing for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxConnections caps concurrent SMTP sessions over all TCP listeners
	// together; MaxConnectionsPerIP per client IP. The sendmail command's
	// Unix socket has a budget of its own of the same size, counted per
	// local uid.
	MaxConnections      int `toml:"max_connections"`
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxMessagesPerMinutePerIP caps the messages one client IP may start
	// per minute (450 4.7.1 beyond it); 0 means no cap.
	MaxMessagesPerMinutePerIP int `toml:"max_messages_per_minute_per_ip"`
}

// User is one SMTP AUTH account for LAN clients.
type User struct {
	Name         string   `toml:"name"`
	PasswordHash string   `toml:"password_hash"` // bcrypt
	Senders      []string `toml:"senders"`       // envelope sender patterns, e.g. "*@example.com"
}

// Upstream is the ISP smarthost.
type Upstream struct {
	Address      string   `toml:"address"` // host:port; empty means hold mail in the queue
	TLS          string   `toml:"tls"`     // "starttls" | "implicit" | "none"
	CAFile       string   `toml:"ca_file"`
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
	Timeout      Duration `toml:"timeout"` // per read/write deadline
	Fallback     []string `toml:"fallback"`
	MaxPerMinute int      `toml:"max_per_minute"`
	MaxPerHour   int      `toml:"max_per_hour"`
	MaxPerDay    int      `toml:"max_per_day"`
	// NullSender is the envelope sender relayd's notices (bounces) use
	// at a smarthost that refuses the null sender <> (Amazon SES); ""
	// sends <> (RFC 5321 §4.5.5).
	NullSender string `toml:"null_sender"`
	// Auth is the SASL mechanism: "" (PLAIN if offered, else LOGIN),
	// "plain", "login", "xoauth2" or "oauthbearer" (then OAuth2 below).
	Auth   string `toml:"auth"`
	OAuth2 OAuth2 `toml:"oauth2"`
	// Password is resolved at load time from PasswordFile or the systemd
	// credential "smarthost"; never logged, never in TOML.
	Password string `toml:"-" json:"-"`
}

// Queue tunes retries and expiry.
type Queue struct {
	MinBackoff   Duration `toml:"min_backoff"`
	MaxBackoff   Duration `toml:"max_backoff"`
	MaxAge       Duration `toml:"max_age"`
	DelayWarning Duration `toml:"delay_warning"`
	Concurrency  int      `toml:"concurrency"`
	MinFreeBytes int64    `toml:"min_free_bytes"`
	// Flush is how a commit reaches stable storage: "auto" (syncfs only
	// on ext4, xfs, btrfs; fdatasync elsewhere), "syncfs" or "fdatasync".
	// FlushForce allows "syncfs" on a filesystem not known to honour it.
	Flush      string `toml:"flush"`
	FlushForce bool   `toml:"flush_force"`
}

// DKIM is one signing key.
type DKIM struct {
	Domain   string `toml:"domain"`
	Selector string `toml:"selector"`
	KeyFile  string `toml:"key_file"`
}

// Rewrite maps local addresses to real ones.
type Rewrite struct {
	Admin  string `toml:"admin"`
	Sender string `toml:"sender"`
	// LocalDomains are more names of this host, beyond those relayd finds
	// itself (hostname, the OS host name and its FQDN, /etc/mailname,
	// localhost and the host's address literals): mail to them goes to
	// Admin, mail from them is sent as Sender.
	LocalDomains []string `toml:"local_domains"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `toml:"listen"`
}

// Log configures logging.
type Log struct {
	Format string `toml:"format"` // "text" | "json"
	Level  string `toml:"level"`  // "debug" | "info" | "warn" | "error"
}

// Duration is a time.Duration that decodes from TOML strings with an extra
// "d" (24h) unit.
type Duration struct{ time.Duration }
