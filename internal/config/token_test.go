package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureToken(t *testing.T) {
	dir := t.TempDir()
	c := &Config{Security: SecurityConfig{TokenFile: filepath.Join(dir, "sub", "token")}}
	created, err := EnsureToken(c)
	if err != nil || !created || len(c.Security.Token) != 64 {
		t.Fatalf("first: created %v, token %q, %v", created, c.Security.Token, err)
	}
	st, err := os.Stat(c.Security.TokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	// A second process of the same home reads it.
	c2 := &Config{Security: SecurityConfig{TokenFile: c.Security.TokenFile}}
	if created, err := EnsureToken(c2); err != nil || created || c2.Security.Token != c.Security.Token {
		t.Fatalf("second: created %v, token %q, %v", created, c2.Security.Token, err)
	}
	// A configured token is used as is; insecure makes none.
	c3 := &Config{Security: SecurityConfig{Token: "given", TokenFile: filepath.Join(dir, "t3")}}
	if created, _ := EnsureToken(c3); created || c3.Security.Token != "given" {
		t.Fatal("a configured token was replaced")
	}
	c4 := &Config{Security: SecurityConfig{Insecure: true, TokenFile: filepath.Join(dir, "t4")}}
	if created, _ := EnsureToken(c4); created || c4.Security.Token != "" {
		t.Fatal("insecure made a token")
	}
	if _, err := os.Stat(filepath.Join(dir, "t4")); err == nil {
		t.Fatal("insecure wrote a token file")
	}
	// An empty token file is an error, not a silent new token.
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := EnsureToken(&Config{Security: SecurityConfig{TokenFile: empty}}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty token file: %v", err)
	}
}

func TestCheckAuth(t *testing.T) {
	c := &Config{Security: SecurityConfig{TokenFile: "/h/token"}}
	err := CheckAuth(c)
	if err == nil || !strings.Contains(err.Error(), "ALLUVIUM_TOKEN") || !strings.Contains(err.Error(), "/h/token") {
		t.Fatalf("no token: %v", err)
	}
	for _, ok := range []SecurityConfig{
		{Token: "x"}, {Insecure: true}, {TLS: TLSConfig{Enabled: true, ClientCA: "/ca.pem"}},
	} {
		if err := CheckAuth(&Config{Security: ok}); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func TestSecurityValidation(t *testing.T) {
	for _, tc := range []struct {
		set  map[string]any
		want string
	}{
		{map[string]any{"security.users": map[string]string{"alice": "short"}}, "shorter than 16"},
		{map[string]any{"security.token": "the-cluster-token-123", "security.users": map[string]string{"alice": "the-cluster-token-123"}}, "cluster token"},
		{map[string]any{"security.tls.client-cert": "/c.pem"}, "go together"},
		{map[string]any{"limits.max-request-bytes": 1000}, "limits.max-request-bytes"},
	} {
		l := NewLoader()
		l.Set("home", t.TempDir())
		for k, v := range tc.set {
			l.Set(k, v)
		}
		if _, err := l.Load(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.set, err, tc.want)
		}
	}
	l := NewLoader()
	l.Set("home", t.TempDir())
	c, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Security.Superuser == "" || !c.Security.Permissions || c.Security.Supergroup != "supergroup" {
		t.Errorf("defaults: %+v", c.Security)
	}
}
