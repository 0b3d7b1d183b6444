package plugin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
)

// A worker with a data directory spools under it and clears what a killed
// run left; one without spools into the system's temporary directory and
// makes nothing there itself, so a kill -9 leaves no directory behind.
func TestEnvScratch(t *testing.T) {
	cfg := &config.Config{}
	dir := t.TempDir()
	stale := filepath.Join(dir, "scratch", "exec-1-2-left")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	e, err := NewEnv(nil, cfg, "127.0.0.1:1", dir, rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got, want := e.ScratchDir(), filepath.Join(dir, "scratch"); got != want {
		t.Fatalf("ScratchDir() = %q, want %q", got, want)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("what a killed run left is still there: %v", err)
	}

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	e2, err := NewEnv(nil, cfg, "127.0.0.1:1", "", rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := e2.ScratchDir(); got != tmp {
		t.Fatalf("ScratchDir() without a data dir = %q, want %q", got, tmp)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("a worker without a data dir made %d entries in the temp dir: %v", len(ents), ents)
	}
	e2.Close()
}
