package token

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/oauth2/jwt"
)

// serviceKey is the part of a Google service account key file (JSON, as
// downloaded from the Cloud console) that the JWT grant needs.
type serviceKey struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

func loadServiceKey(path string) (*serviceKey, error) {
	if path == "" {
		return nil, fmt.Errorf("token: grant jwt needs oauth2.key_file (the service account key)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token: key_file: %w", err)
	}
	var k serviceKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("token: key_file %s: not a service account key (JSON): %v", path, err)
	}
	if k.Type != "service_account" || k.ClientEmail == "" || k.PrivateKey == "" {
		return nil, fmt.Errorf("token: key_file %s: not a service account key (want type \"service_account\" with client_email and private_key)", path)
	}
	return &k, nil
}

// config is the RFC 7523 JWT bearer grant acting for cfg.Subject.
func (k *serviceKey) config(cfg Config) *jwt.Config {
	return &jwt.Config{
		Email:        k.ClientEmail,
		PrivateKey:   []byte(k.PrivateKey),
		PrivateKeyID: k.PrivateKeyID,
		Subject:      cfg.Subject,
		Scopes:       cfg.Scopes,
		TokenURL:     cfg.TokenURL,
	}
}
