package fsmaster

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
)

// memJournal is an in-memory appender for namespace unit tests.
type memJournal struct {
	mu      sync.Mutex
	seq     int64
	entries []*api.JournalEntry
}

type doneWaiter struct{}

func (doneWaiter) Wait(context.Context) error { return nil }

func (m *memJournal) Append(e *api.JournalEntry) waiter {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	e.Sequence = m.seq
	m.entries = append(m.entries, proto.Clone(e).(*api.JournalEntry))
	return doneWaiter{}
}

// newTestNS returns a bootstrapped namespace over a fresh local UFS dir.
func newTestNS(t testing.TB) (*namespace, *memJournal, string) {
	t.Helper()
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	if err := os.MkdirAll(ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	j := &memJournal{}
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)
	return ns, j, ufsDir
}

// testConfig returns a config with its home in a temp dir and free ports.
func testConfig(t testing.TB, set map[string]any) *config.Config {
	t.Helper()
	l := config.NewLoader()
	l.Set("home", t.TempDir())
	l.Set("fsmaster.rpc-port", 0)
	l.Set("fsmaster.http-port", 0)
	l.Set("fsmaster.journal.checkpoint-poll-interval", "50ms")
	for k, v := range set {
		l.Set(k, v)
	}
	c, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func codeOf(err error) codes.Code { return status.Code(err) }

func wantCode(t testing.TB, err error, c codes.Code, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, c)
	}
	if codeOf(err) != c {
		t.Fatalf("%s: %v, want code %v", what, err, c)
	}
}

// must returns v, panicking (failing the test with a stack) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func check(t testing.TB, ns *namespace) {
	t.Helper()
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.st.CheckInvariants(); err != nil {
		t.Fatalf("invariants: %v\n%s", err, ns.st.Dump())
	}
}

func dump(ns *namespace) string {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.st.Dump()
}

type httpResp struct {
	code int
	body string
}

func httpGet(url string) (httpResp, error) {
	resp, err := http.Get(url)
	if err != nil {
		return httpResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpResp{resp.StatusCode, string(b)}, err
}
