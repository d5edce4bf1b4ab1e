package conf

import (
	"fmt"
	"strings"
	"testing"
)

const oauthBase = "[upstream]\naddress = \"smtp.office365.com:587\"\nusername = \"relay@example.com\"\nauth = \"xoauth2\"\n[upstream.oauth2]\n"

func TestOAuth2RefreshToken(t *testing.T) {
	c := mustParse(t, testEnv(nil), oauthBase+`grant = "refresh_token"
token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token"
device_auth_url = "https://login.microsoftonline.com/t/oauth2/v2.0/devicecode"
client_id = "id"
scopes = ["https://outlook.office365.com/SMTP.Send", "offline_access"]
`)
	o := c.Upstream.OAuth2
	if !c.Upstream.OAuth() || o.Grant != GrantRefreshToken || len(o.Scopes) != 2 || o.ClientSecret != "" || c.Upstream.Password != "" {
		t.Errorf("upstream = %+v", c.Upstream)
	}
}

func TestOAuth2ClientSecret(t *testing.T) {
	dir := t.TempDir()
	sec := writeFile(t, dir, "sec", "the-client-secret\n")
	src := oauthBase + fmt.Sprintf("grant = \"client_credentials\"\ntoken_url = \"https://login.example/token\"\nclient_id = \"id\"\nscopes = [\"https://outlook.office365.com/.default\"]\nclient_secret_file = %q\n", sec)
	c := mustParse(t, testEnv(nil), src)
	if c.Upstream.OAuth2.ClientSecret != "the-client-secret" {
		t.Errorf("secret %q", c.Upstream.OAuth2.ClientSecret)
	}
	for _, s := range []string{c.Upstream.String(), fmt.Sprintf("%#v", c.Upstream)} {
		if strings.Contains(s, "the-client-secret") || !strings.Contains(s, redacted) {
			t.Errorf("secret not redacted: %s", s)
		}
	}
	// The systemd credential "oauth2" when no file is named.
	creds := t.TempDir()
	writeFile(t, creds, "oauth2", "from-credential\n")
	src = strings.Replace(src, fmt.Sprintf("client_secret_file = %q\n", sec), "", 1)
	c = mustParse(t, testEnv(map[string]string{"CREDENTIALS_DIRECTORY": creds}), src)
	if c.Upstream.OAuth2.ClientSecret != "from-credential" {
		t.Errorf("secret %q", c.Upstream.OAuth2.ClientSecret)
	}
	got := parseErrs(t, testEnv(nil), src)
	wantLines(t, got, `/etc/relayd/relayd.toml: upstream.oauth2.client_secret_file: must be set with grant = "client_credentials", or pass the systemd credential "oauth2" (LoadCredential=oauth2:/etc/relayd/oauth2.secret)`)
}

func TestOAuth2Problems(t *testing.T) {
	got := parseErrs(t, testEnv(nil), "[upstream]\naddress = \"smtp.gmail.com:587\"\nauth = \"oauthbearer\"\npassword_file = \"/x\"\n[upstream.oauth2]\ngrant = \"refresh_token\"\ntoken_url = \"http://insecure.example/token\"\nsubject = \"a@b\"\n")
	wantLines(t, got,
		`/etc/relayd/relayd.toml: upstream.username: must be set with auth = "oauthbearer": the mailbox the token is for (e.g. relay@example.com)`,
		`/etc/relayd/relayd.toml: upstream.password_file: is not used with auth = "oauthbearer" (the token replaces the password): remove it`,
		`/etc/relayd/relayd.toml: upstream.oauth2.token_url: "http://insecure.example/token" is not an https:// URL (the client secret and tokens travel over it)`,
		`/etc/relayd/relayd.toml: upstream.oauth2.client_id: must be set (the application (client) ID of the app registration)`,
		`/etc/relayd/relayd.toml: upstream.oauth2.scopes: must list the scopes (Microsoft 365: ["https://outlook.office365.com/SMTP.Send", "offline_access"], or ["https://outlook.office365.com/.default"] with client_credentials; Google: ["https://mail.google.com/"])`,
		`/etc/relayd/relayd.toml: upstream.oauth2.subject: is only used with grant = "jwt"`,
	)
	got = parseErrs(t, testEnv(nil), oauthBase+"grant = \"jwt\"\nscopes = [\"https://mail.google.com/\"]\n")
	wantLines(t, got, `/etc/relayd/relayd.toml: upstream.oauth2.key_file: must be set with grant = "jwt": the service account key (JSON) downloaded from the Google Cloud console`)
	got = parseErrs(t, testEnv(nil), "[upstream]\naddress = \"smtp.isp.example:587\"\nauth = \"cram-md5\"\n[upstream.oauth2]\ngrant = \"jwt\"\n")
	wantLines(t, got,
		`/etc/relayd/relayd.toml: upstream.auth: "cram-md5" is not one of "" (PLAIN or LOGIN, whichever is offered), plain, login, xoauth2, oauthbearer`,
		`/etc/relayd/relayd.toml: upstream.oauth2.grant: is set but upstream.auth is "cram-md5": set upstream.auth = "xoauth2" (Microsoft 365, Google) or "oauthbearer"`,
	)
	got = parseErrs(t, testEnv(nil), strings.Replace(oauthBase, `"relay@example.com"`, `"relay\u0001@example.com"`, 1)+"grant = \"refresh_token\"\ntoken_url = \"https://t.example/\"\nclient_id = \"i\"\nscopes = [\"s\"]\n")
	wantLines(t, got, `/etc/relayd/relayd.toml: upstream.username: "relay\x01@example.com" contains spaces or control characters`)
	got = parseErrs(t, testEnv(nil), oauthBase)
	wantLines(t, got, `/etc/relayd/relayd.toml: upstream.oauth2.grant: must be set with auth = "xoauth2": "client_credentials", "refresh_token" or "jwt"`)
}

// Client commands (LoadClient) neither need nor read the client secret.
func TestOAuth2NoSecrets(t *testing.T) {
	e := testEnv(nil)
	e.noSecrets = true
	c := mustParse(t, e, oauthBase+"grant = \"client_credentials\"\ntoken_url = \"https://login.example/token\"\nclient_id = \"id\"\nscopes = [\"s\"]\nclient_secret_file = \"/nonexistent\"\n")
	if c.Upstream.OAuth2.ClientSecret != "" {
		t.Error("secret read")
	}
}
