package fsmaster

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/alluvium/alluvium/api"
)

// lazyJournal makes an entry durable only when someone waits for it (and
// with it every entry before it, as a journal's commits do): an entry
// nobody waited for is not durable, so a listing that answered with an
// inode whose entry was never waited for shows.
type lazyJournal struct {
	memJournal
	durable atomic.Int64
}

type lazyWaiter struct {
	j   *lazyJournal
	seq int64
}

func (w lazyWaiter) Wait(context.Context) error {
	for {
		cur := w.j.durable.Load()
		if cur >= w.seq || w.j.durable.CompareAndSwap(cur, w.seq) {
			return nil
		}
	}
}

func (j *lazyJournal) Append(e *api.JournalEntry) waiter {
	j.memJournal.Append(e)
	return lazyWaiter{j: j, seq: e.Sequence}
}

// createdBy returns the sequence of the entry that learned inode id (0:
// none did).
func (j *lazyJournal) createdBy(id int64) int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range j.entries {
		if u := e.GetUfsChildren(); u != nil && id >= u.GetFirstId() && id < u.GetFirstId()+int64(len(u.GetChildren())) {
			return e.GetSequence()
		}
	}
	return 0
}

// TestListLearnsAhead: a recursive listing that learns a UFS tree learns
// the next page's directories while it waits for the journal, and a page
// is answered only once the entries that learned its inodes are durable,
// its own and those learned ahead by the page before; the pages are the
// ones a listing without learn-ahead returns, and a tree once known is
// listed without learning anything.
func TestListLearnsAhead(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	for d := range 6 {
		for f := range 6 {
			ufsWrite(t, ufsDir, fmt.Sprintf("t/d%02d/f%d", d, f), 1)
		}
	}
	j := &lazyJournal{}
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)

	var got []string
	token := ""
	for page := 1; ; page++ {
		resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 5, PageToken: token}))
		durable := j.durable.Load()
		for _, fi := range resp.Infos {
			got = append(got, fi.Path)
			if seq := j.createdBy(fi.FileId); seq > durable {
				t.Fatalf("page %d answered %s, learned by entry %d, while entries up to %d only were durable", page, fi.Path, seq, durable)
			}
		}
		if page == 1 {
			// Page 1 ends in d00; the next page needs d01, learned ahead.
			ns.mu.RLock()
			d := ns.st.lookup("/t/d01")
			loaded := d != nil && d.childrenLoaded()
			ns.mu.RUnlock()
			if !loaded {
				t.Errorf("after the first page, /t/d01 was not learned ahead")
			}
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	var want []string
	for d := range 6 {
		want = append(want, fmt.Sprintf("/t/d%02d", d))
		for f := range 6 {
			want = append(want, fmt.Sprintf("/t/d%02d/f%d", d, f))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ls -R\n got %v\nwant %v", got, want)
	}
	check(t, ns)

	n := len(j.entries)
	if again := listAll(t, ns, "/t", true, 5); fmt.Sprint(again) != fmt.Sprint(want) {
		t.Fatalf("ls -R again\n got %v\nwant %v", again, want)
	}
	if len(j.entries) != n {
		t.Fatalf("listing a known tree journaled %d entries", len(j.entries)-n)
	}

}
