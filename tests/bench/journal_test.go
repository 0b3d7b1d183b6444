package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// journalEntry is a typical journal entry: a file create.
func journalEntry(i int) *api.JournalEntry {
	return &api.JournalEntry{
		OpTimeMs: time.Now().UnixMilli(),
		Body: &api.JournalEntry_InodeFile{InodeFile: &api.InodeFileEntry{
			Id: int64(i) << 24, ParentId: 1, Name: fmt.Sprintf("part-%08d.parquet", i),
			Mode: 0o644, Owner: "alice", Group: "staff", CreationTimeMs: time.Now().UnixMilli(),
			BlockSizeBytes: 64 << 20, ReplicationMax: -1,
		}},
	}
}

// BenchmarkJournalAppend measures durable journal appends (Append + Wait:
// the entry is fsynced when Wait returns) from 1, 16 and 64 concurrent
// appenders, and how many entries each fsync carried (group commit).
// Compare entries/s with BenchmarkBboltFsync's tx/s: at 1 appender they
// should be about equal; group commit is what lifts the rest.
func BenchmarkJournalAppend(b *testing.B) {
	for _, c := range []struct{ appenders, entries int }{{1, 1000}, {16, 8000}, {64, 32000}} {
		b.Run(fmt.Sprintf("appenders=%d", c.appenders), func(b *testing.B) {
			var elapsed time.Duration
			var entries, batches int64
			for i := 0; i < b.N; i++ {
				j, err := journal.Open(journal.Options{Dir: filepath.Join(b.TempDir(), "journal")})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				var wg sync.WaitGroup
				for w := 0; w < c.appenders; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for k := w; k < c.entries; k += c.appenders {
							if err := j.Append(journalEntry(k)).Wait(context.Background()); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed += time.Since(start)
				st := j.Stats()
				entries += st.Entries
				batches += st.Batches
				if err := j.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(entries)/elapsed.Seconds(), "entries/s")
			b.ReportMetric(float64(entries)/float64(batches), "entries/fsync")
			reference(b, "*", "BboltFsync: one fsynced bbolt transaction per entry")
			b.Logf("NOTE: JournalAppend: Append + Wait of a file-create entry (CRC32C + protobuf) by N goroutines, one bbolt commit (fsync) per group of waiting entries; BboltFsync, the reference, commits each 80-byte value in its own fsynced transaction with the journal's bbolt options, on the same disk; neither verifies")
		})
	}
}

// BenchmarkBboltFsync is the reference: single-entry bbolt transactions,
// each fsynced, with the journal's segment options, on the same disk.
func BenchmarkBboltFsync(b *testing.B) {
	const txs = 1000
	val := make([]byte, 80)
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.bolt"), 0o644, journalBoltOptions())
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("entries")); return err }); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for k := 0; k < txs; k++ {
			if err := db.Update(func(tx *bbolt.Tx) error {
				bk := tx.Bucket([]byte("entries"))
				bk.FillPercent = 1.0 // keys only grow, as the journal's
				return bk.Put([]byte(fmt.Sprintf("%016d", k)), val)
			}); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
		db.Close()
	}
	b.ReportMetric(float64(txs*b.N)/elapsed.Seconds(), "tx/s")
	reference(b, "*", "the reference itself: the disk's fsynced bbolt transaction rate")
}
