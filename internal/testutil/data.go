package testutil

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// RandBytes returns n random bytes: test data no compression or
// deduplication can shortcut.
func RandBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// SHA256 is the hex SHA-256 of b, for comparing file contents in messages
// that stay short.
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// WriteFile writes data to p (mode 0644), making its parent directories,
// and returns p.
func WriteFile(t testing.TB, p string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatalf("mkdir %s: %v", filepath.Dir(p), err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

// SortedKeys returns m's keys in order, so checks and their messages come
// out the same each run.
func SortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Metrics reads every Prometheus series from the /metrics of an http
// address (host:port), keyed by name plus {labels} as printed.
func Metrics(addr string) (map[string]float64, error) { return MetricsWithToken(addr, ClusterToken()) }

// MetricsWithToken is Metrics of a process run with its own token.
func MetricsWithToken(addr, token string) (map[string]float64, error) {
	url := "http://" + addr + "/metrics"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return out, nil
}

// Metric reads one series (name plus optional {labels}) from addr's
// /metrics; a series that is not there fails the test.
func Metric(t testing.TB, addr, series string) float64 {
	t.Helper()
	m, err := Metrics(addr)
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	v, ok := m[series]
	if !ok {
		t.Fatalf("%s is not in the metrics of %s", series, addr)
	}
	return v
}
