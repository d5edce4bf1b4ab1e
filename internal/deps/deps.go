// Package deps pins the project's modules in go.mod while the packages that
// use them are being written. It is never imported.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/emersion/go-msgauth/dkim"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/sys/unix"
)
