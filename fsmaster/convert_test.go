package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// TestConvertJournalRoundTrip: a local journal becomes an embedded one (a
// group of one) and back, with the namespace intact each way, and a master
// started with the wrong type refuses with a message that says what to do.
func TestConvertJournalRoundTrip(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	if err := os.MkdirAll(ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, map[string]any{"fsmaster.ufs": "file://" + ufsDir, "fsmaster.raft.node-id": "m1",
		"fsmaster.raft.port": 0, "fsmaster.host": "127.0.0.1", "fsmaster.raft.heartbeat-timeout": "300ms", "fsmaster.raft.election-timeout": "300ms"})
	ctx := context.Background()
	tm := startMaster(t, cfg)
	for i := 0; i < 10; i++ {
		must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/c/d%d", i), Recursive: true}))
	}
	must(tm.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: "/c/after-checkpoint"}))
	want := dump(tm.ns)
	tm.stop(t)

	// A master with the other type refuses the journal.
	cfg.FSMaster.Journal.Type = "embedded"
	m, _ := New(cfg, nil)
	if err := m.Start(ctx); err == nil || !strings.Contains(err.Error(), "fsadmin journal convert --to embedded") {
		t.Fatalf("embedded master on a local journal: %v", err)
	}
	msg, err := ConvertJournal(ctx, cfg, journal.KindEmbedded, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(msg)
	if _, err := ConvertJournal(ctx, cfg, journal.KindEmbedded, nil); err == nil {
		t.Fatal("converted twice")
	}
	em := startMaster(t, cfg)
	waitLeading(t, em.Master)
	if got := dump(em.ns); got != want {
		t.Fatalf("after the conversion to embedded:\n%s\nwant:\n%s", got, want)
	}
	must(em.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/c/embedded"}))
	// Back: entries after the last snapshot are refused, then converted
	// once a checkpoint covers them.
	em.stop(t)
	if _, err := ConvertJournal(ctx, cfg, journal.KindLocal, nil); err == nil || !strings.Contains(err.Error(), "fsadmin checkpoint") {
		t.Fatalf("convert with entries after the snapshot: %v", err)
	}
	em = startMaster(t, cfg)
	waitLeading(t, em.Master)
	must(em.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	want = dump(em.ns)
	em.stop(t)
	if _, err := ConvertJournal(ctx, cfg, journal.KindLocal, nil); err != nil {
		t.Fatal(err)
	}
	cfg.FSMaster.Journal.Type = "local"
	lm := startMaster(t, cfg)
	if got := dump(lm.ns); got != want {
		t.Fatalf("after the conversion back to local:\n%s\nwant:\n%s", got, want)
	}
	must(lm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/c/local-again"}))
}

func waitLeading(t *testing.T, m *Master) {
	t.Helper()
	for i := 0; i < 2000 && !m.emb.isLeader(); i++ {
		sleepMs(10)
	}
	if !m.emb.isLeader() {
		t.Fatal("the single embedded master never leads")
	}
}

func sleepMs(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }
