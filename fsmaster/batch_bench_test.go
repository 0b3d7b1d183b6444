package fsmaster

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// encJournal is an appender that encodes each entry as the journal does
// (sequence, deterministic protobuf, CRC) and keeps nothing: the
// namespace's own cost of a journaled call, without the disk.
type encJournal struct {
	mu  sync.Mutex
	seq int64
}

func (j *encJournal) Append(e *api.JournalEntry) waiter {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	e.Sequence = j.seq
	if _, _, err := journal.EncodeEntry(e); err != nil {
		panic(err)
	}
	return doneWaiter{}
}

// BenchmarkNamespaceCreateBatch is the namespace's part of
// FSMasterCreate/sdk: batches of 16 MUST_CACHE creates then their 16
// completes, spread over 64 directories as the benchmark's goroutines
// write them. One op is one file (a create and a complete).
func BenchmarkNamespaceCreateBatch(b *testing.B) {
	const batch, dirs = 16, 64
	ctx := context.Background()
	ns := newNamespace(NewState(), &encJournal{}, nsConfig{blockSize: 64 << 20, owner: "u", group: "g"}, nil, nil)
	if err := ns.bootstrap(ctx, "file://"+b.TempDir(), nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ns.closeUFS)
	for d := range dirs {
		if _, err := ns.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/bench/c%02d", d), Recursive: true, WriteType: api.WriteType_MUST_CACHE}); err != nil {
			b.Fatal(err)
		}
	}
	creates := make([]*api.CreateFileRequest, batch)
	completes := make([]*api.CompleteFileRequest, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for k := range batch {
			p := fmt.Sprintf("/bench/c%02d/part-%07d", (i+k)%dirs, (i+k)/dirs)
			creates[k] = &api.CreateFileRequest{Path: p, WriteType: api.WriteType_MUST_CACHE}
		}
		resp, err := ns.CreateFiles(ctx, &api.CreateFilesRequest{Files: creates})
		if err != nil {
			b.Fatal(err)
		}
		for k, r := range resp.GetResults() {
			if r.GetError() != "" {
				b.Fatal(r.GetError())
			}
			completes[k] = &api.CompleteFileRequest{Path: creates[k].GetPath(), FileId: r.GetInfo().GetFileId()}
		}
		cresp, err := ns.CompleteFiles(ctx, &api.CompleteFilesRequest{Files: completes})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range cresp.GetResults() {
			if r.GetError() != "" {
				b.Fatal(r.GetError())
			}
		}
	}
}
