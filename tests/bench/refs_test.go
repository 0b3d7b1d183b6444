package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/testutil"
)

// reference records, for docs/BENCHMARKS.md, what a benchmark's metrics
// are measured against (metric "*": every metric without one of its own):
// benchreport prints it on every row and refuses a row that names none.
// What both sides do — verify, fsync, cache — goes in the benchmark's
// NOTE.
func reference(b *testing.B, metric, ref string) {
	b.Helper()
	b.Logf("REF: %s: %s: %s", strings.TrimPrefix(b.Name(), "Benchmark"), metric, ref)
}

// bboltDurableWrites is the reference of the FS master's journal: the same
// entries (bytes each, a CRC32C prefix as the journal stores) put into a
// fresh bbolt file with the journal's segment options in txs transactions,
// each fsynced, one after another, on the same disk. It returns the time.
func bboltDurableWrites(b *testing.B, dir string, entries [][]byte, txs int) time.Duration {
	b.Helper()
	db, err := bbolt.Open(filepath.Join(dir, "reference.bolt"), 0o644, journalBoltOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("entries")); return err }); err != nil {
		b.Fatal(err)
	}
	txs = max(1, min(txs, len(entries)))
	table := crc32.MakeTable(crc32.Castagnoli)
	start := time.Now()
	next := 0
	for t := 0; t < txs; t++ {
		end := len(entries) * (t + 1) / txs // the entries spread evenly over the transactions
		if err := db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket([]byte("entries"))
			bk.FillPercent = 1.0 // keys only grow, as the journal's
			for ; next < end; next++ {
				key := binary.BigEndian.AppendUint64(nil, uint64(next+1))
				val := binary.BigEndian.AppendUint32(nil, crc32.Checksum(entries[next], table))
				if err := bk.Put(key, append(val, entries[next]...)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// journalBoltOptions are the options the journal opens its segments with
// (fsmaster/journal/segment.go: segmentOptions).
func journalBoltOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType, PageSize: 4096}
}

// createEntries are the journal entries of n create+complete pairs as the
// FS master writes them, marshalled.
func createEntries(n int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		create := journalEntry(i)
		complete := &api.JournalEntry{OpTimeMs: time.Now().UnixMilli(), Body: &api.JournalEntry_CompleteFile{
			CompleteFile: &api.CompleteFileEntry{Id: int64(i) << 24, Length: 1 << 20}}}
		for _, e := range []*api.JournalEntry{create, complete} {
			raw, err := proto.Marshal(e)
			if err != nil {
				panic(err)
			}
			out = append(out, raw)
		}
	}
	return out
}

// nopFSM is a raft FSM that keeps nothing: what is left of an apply is
// raft's own work and the log's fsync.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

// rawRaftApplies is the reference of the job master: a lone raft node
// built as the job master builds its own (raftgroup: the bbolt log and
// stable store, fsync on every log write, the same raft settings), with an
// FSM that does nothing, applying entries commands of size bytes from
// appliers goroutines. It returns the time and the log writes (fsyncs).
func rawRaftApplies(b *testing.B, entries int, size int, appliers int) (time.Duration, uint64) {
	b.Helper()
	cfg := benchConfig(b)
	port := testutil.FreePort(b)
	id := fmt.Sprintf("127.0.0.1:%d", port)
	parts, err := raftgroup.Open(raftgroup.StoreOptions{
		Dir: filepath.Join(b.TempDir(), "raft"), DirKey: "dir", BindHost: "127.0.0.1", Host: "127.0.0.1", HostKey: "host",
		Port: port, Magic: raftgroup.JobMasterMagic, Log: zap.NewNop(), HCLog: raftgroup.HCLog(zap.NewNop(), "warn"),
	})
	if err != nil {
		b.Fatal(err)
	}
	counted := parts.Count()
	rc := raftgroup.Config(cfg.JobMaster.Raft, id, nil, raftgroup.HCLog(zap.NewNop(), "warn"))
	if _, _, err := raftgroup.Bootstrap(rc, parts, raftgroup.Peer{ID: id, RaftAddr: id}, nil, false); err != nil {
		b.Fatal(err)
	}
	r, err := raft.NewRaft(rc, nopFSM{}, parts.Logs, parts.Stable, parts.Snaps, parts.Trans)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = r.Shutdown().Error()
		_ = parts.Close()
	}()
	select {
	case <-waitLeader(r):
	case <-time.After(30 * time.Second):
		b.Fatal("the reference raft node did not lead")
	}
	cmd := make([]byte, max(size, 1))
	before := counted.Writes()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < appliers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < entries; i += appliers {
				if err := r.Apply(cmd, time.Minute).Error(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), counted.Writes() - before
}

// waitLeader is closed once r leads.
func waitLeader(r *raft.Raft) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for r.State() != raft.Leader {
			select {
			case <-r.LeaderCh():
			case <-time.After(10 * time.Millisecond): // LeaderCh may have fired before we listened
			}
		}
	}()
	return ch
}

// getLeaderRPCs is the reference of a read through the FS master: the
// same number of calls, from the same clients over the same connections,
// to GetLeader, which the same server answers with no namespace work (the
// gRPC, auth and interceptor floor).
func getLeaderRPCs(b *testing.B, clients []api.FileSystemMasterClient, ops int) time.Duration {
	b.Helper()
	ctx := context.Background()
	return run(b, clients, ops, func(fs api.FileSystemMasterClient, _, _ int) error {
		_, err := fs.GetLeader(ctx, &api.GetLeaderRequest{})
		return err
	})
}
