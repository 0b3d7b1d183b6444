package fsmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
)

// FuzzHTTPFiles drives GET /api/v1/files with arbitrary query strings
// (path, limit, pageToken, anything else) against a real master holding a
// small tree. Every answer is JSON, never a 500, and the namespace is the
// same afterwards (once its directories were listed, a read never writes).
func FuzzHTTPFiles(f *testing.F) {
	cfg := testConfig(f, map[string]any{"fsmaster.list.max-page-size": 50})
	m, err := New(cfg, zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	ctx := context.Background()
	for i := range 30 {
		p := fmt.Sprintf("/d%d/e%02d", i%3, i)
		if _, err := m.ns.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: p, Recursive: true, WriteType: api.WriteType_MUST_CACHE}); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := m.ns.CreateFile(ctx, &api.CreateFileRequest{Path: "/d0/file", WriteType: api.WriteType_MUST_CACHE, BlockSizeBytes: 1024}); err != nil {
		f.Fatal(err)
	}
	// The first listing of a directory merges its UFS children (a journal
	// write, by design); after that a read writes nothing.
	for _, d := range []string{"/", "/d0", "/d1", "/d2"} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/files?path="+d, nil)
		m.handleFiles(httptest.NewRecorder(), r)
	}
	before := dump(m.ns)
	for _, q := range []string{
		"", "path=/", "path=/d0&limit=3", "path=/d0&limit=3&pageToken=e03", "path=/d0/file", "path=/nope",
		"path=../../etc", "path=%00", "path=/d0&limit=-1", "path=/d0&limit=99999999999", "path=/d1&pageToken=%2F..%2F",
		"path=//d2//./e02/..", "limit=abc", "path=" + string(make([]byte, 300)), "path=/d0;x=1&&&=",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/files", nil)
		r.URL.RawQuery = query
		w := httptest.NewRecorder()
		m.handleFiles(w, r)
		if w.Code >= 500 {
			t.Fatalf("query %q: status %d: %s", query, w.Code, w.Body)
		}
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("query %q: not JSON (%v): %s", query, err, w.Body)
		}
		if kids, ok := body["children"].([]any); ok && len(kids) > 50 {
			t.Fatalf("query %q: %d children in one page, the most is 50", query, len(kids))
		}
		if got := dump(m.ns); got != before {
			t.Fatalf("query %q changed the namespace:\n%s", query, diff(before, got))
		}
	})
}
