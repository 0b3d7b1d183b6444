package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnsureToken makes sure the cluster has a token: when none is configured
// (security.token, ALLUVIUM_TOKEN, --token, the token file) and
// security.insecure is off, it writes a new random one to
// security.token-file with mode 0600 and uses it. It reports whether it
// created the file. The FS master's commands call it (format, local and
// fsmaster), so a fresh cluster is never open.
func EnsureToken(c *Config) (bool, error) {
	if c.Security.Token != "" || c.Security.Insecure {
		return false, nil
	}
	path := c.Security.TokenFile
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			c.Security.Token = tok
			return false, nil
		}
		return false, fmt.Errorf("token file %s is empty (remove it to have a new token generated, or set security.token)", path)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return false, fmt.Errorf("generate a cluster token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("token file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process of this home won the race: use its token.
		c.Security.Token = ""
		return EnsureToken(c)
	}
	if err != nil {
		return false, fmt.Errorf("token file %s: %w", path, err)
	}
	_, werr := f.WriteString(tok + "\n")
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return false, fmt.Errorf("token file %s: %w", path, werr)
	}
	c.Security.Token = tok
	return true, nil
}

// CheckAuth refuses to run a server that would accept unauthenticated calls
// by accident: it needs a cluster token, a client CA (mTLS) or an explicit
// security.insecure.
func CheckAuth(c *Config) error {
	s := c.Security
	if s.Token != "" || s.TLS.Enabled && s.TLS.ClientCA != "" || s.Insecure {
		return nil
	}
	return fmt.Errorf("no cluster token: set ALLUVIUM_TOKEN, --token or security.token, or copy the FS master's token file to %s (or set security.insecure: true to run without authentication)", s.TokenFile)
}
