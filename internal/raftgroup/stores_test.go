package raftgroup

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// TestRaftLogKeepsNoFreelistOnDisk: the raft log's commits write the new
// log pages only, not the freelist (boltOptions), and what it stored reads
// back after a reopen, which rebuilds the freelist by scanning.
func TestRaftLogKeepsNoFreelistOnDisk(t *testing.T) {
	dir := t.TempDir()
	logs, _, err := OpenStores(dir, "test.raft.dir", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	// Batches as raft writes them, then a compaction, so the file has
	// freed pages a synced freelist would list.
	var idx uint64
	for range 20 {
		batch := make([]*raft.Log, 10)
		for i := range batch {
			idx++
			batch[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: make([]byte, 512)}
		}
		if err := logs.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := logs.DeleteRange(1, 150); err != nil {
		t.Fatal(err)
	}
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bbolt.Open(filepath.Join(dir, "raft.db"), 0o600, boltOptions())
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		free := 0
		for id := 0; ; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p == nil {
				break
			}
			switch p.Type {
			case "freelist":
				t.Errorf("page %d is a live freelist page: the raft log syncs its freelist", id)
			case "free":
				free++
			}
		}
		if free == 0 {
			t.Error("no free pages after the compaction: the test shows nothing")
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	logs, _, err = OpenStores(dir, "test.raft.dir", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var l raft.Log
	if err := logs.GetLog(idx, &l); err != nil || l.Index != idx || len(l.Data) != 512 {
		t.Fatalf("entry %d after reopening: %+v, %v", idx, l, err)
	}
	if first, err := logs.FirstIndex(); err != nil || first != 151 {
		t.Fatalf("first index after reopening: %d, %v (want 151)", first, err)
	}
}
