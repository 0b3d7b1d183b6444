package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
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
			// Page 1 ends in d00; the next page needs d01, learned ahead
			// (in the background: the answer does not wait for it).
			waitFor(t, func() bool {
				ns.mu.RLock()
				defer ns.mu.RUnlock()
				d := ns.st.lookup("/t/d01")
				return d != nil && d.childrenLoaded()
			})
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

// learnedChildren counts the UFS children the journal learned, by parent id.
func (j *lazyJournal) learnedChildren() map[int64]int {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[int64]int{}
	for _, e := range j.entries {
		if u := e.GetUfsChildren(); u != nil {
			out[u.GetParentId()] += len(u.GetChildren())
		}
	}
	return out
}

// flatTree writes t/dNN/fN under ufsDir, dirs directories of files files
// each, and returns the paths a recursive listing of /t gives, in order.
func flatTree(t *testing.T, ufsDir string, dirs, files int) []string {
	t.Helper()
	var want []string
	for d := range dirs {
		want = append(want, fmt.Sprintf("/t/d%02d", d))
		for f := range files {
			ufsWrite(t, ufsDir, fmt.Sprintf("t/d%02d/f%d", d, f), 1)
			want = append(want, fmt.Sprintf("/t/d%02d/f%d", d, f))
		}
	}
	return want
}

// wantLearnedOnce checks that j journaled each directory of flatTree's
// tree with one learned child per UFS entry: none learned twice.
func wantLearnedOnce(t *testing.T, ns *namespace, j *lazyJournal, dirs, files int) {
	t.Helper()
	ns.mu.RLock()
	byID := map[int64]string{}
	for d := range dirs {
		p := fmt.Sprintf("/t/d%02d", d)
		if n := ns.st.lookup(p); n != nil {
			byID[n.id] = p
		}
	}
	ns.mu.RUnlock()
	for id, n := range j.learnedChildren() {
		if p, ok := byID[id]; ok && n != files {
			t.Errorf("%s: the journal learned %d children, want %d (one per UFS entry)", p, n, files)
		}
	}
}

// TestListLearnsOnce: listings of one tree that learn it at once (two
// callers, each with its learn-aheads running beside its pages) learn each
// UFS entry once — one inode and one journal record per entry — and list
// the whole tree; closing the namespace ends the learn-aheads.
func TestListLearnsOnce(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	const dirs, files = 12, 9
	want := flatTree(t, ufsDir, dirs, files)
	j := &lazyJournal{}
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)

	got := make([][]string, 2)
	errs := make(chan error, len(got))
	for i := range got {
		go func() {
			token := ""
			for {
				resp, err := ns.ListStatus(bg, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 4, PageToken: token})
				if err != nil {
					errs <- err
					return
				}
				for _, fi := range resp.Infos {
					got[i] = append(got[i], fi.Path)
				}
				if token = resp.NextPageToken; token == "" {
					errs <- nil
					return
				}
			}
		}()
	}
	for range got {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range got {
		if fmt.Sprint(got[i]) != fmt.Sprint(want) {
			t.Fatalf("ls -R by caller %d\n got %v\nwant %v", i, got[i], want)
		}
	}
	ns.stopAhead()
	ns.aheadMu.Lock()
	running := ns.aheadRun
	ns.aheadMu.Unlock()
	if running != 0 {
		t.Fatalf("%d learn-aheads still running after stopAhead", running)
	}
	check(t, ns)
	wantLearnedOnce(t, ns, j, dirs, files)
}

// TestLearnAheadKeepsPermissions: a learn-ahead runs as the listing's
// caller, so it stops where the caller may not list, as the listing does:
// a directory the caller may not read is never learned for it.
func TestLearnAheadKeepsPermissions(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	ufsWrite(t, ufsDir, "t/open/f0", 1)
	ufsWrite(t, ufsDir, "t/shut/f0", 1)
	if err := os.Chmod(filepath.Join(ufsDir, "t/shut"), 0o700); err != nil {
		t.Fatal(err)
	}
	j := &lazyJournal{}
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g",
		perm: permConfig{enabled: true, superuser: "root", groups: map[string][]string{}}}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)

	alice := as("alice")
	// Page 1 is /t/open and its file; the learn-ahead of page 2 meets
	// /t/shut, which alice may not list.
	resp := must(ns.ListStatus(alice, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 2}))
	if len(resp.Infos) != 2 || resp.NextPageToken != "/t/open/f0" {
		t.Fatalf("page 1: %v, token %q", resp.Infos, resp.NextPageToken)
	}
	waitFor(t, func() bool {
		ns.aheadMu.Lock()
		defer ns.aheadMu.Unlock()
		return ns.aheadRun == 0
	})
	ns.mu.RLock()
	shut := ns.st.lookup("/t/shut")
	learned := shut != nil && shut.childrenLoaded()
	ns.mu.RUnlock()
	if shut == nil || learned {
		t.Fatalf("/t/shut: found %v, learned %v; want it found, not learned for alice", shut != nil, learned)
	}
	if n := j.learnedChildren()[shut.id]; n != 0 {
		t.Fatalf("the journal learned %d children of /t/shut for alice", n)
	}
	_, err := ns.ListStatus(alice, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 2, PageToken: resp.NextPageToken})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("page 2 for alice: %v, want PermissionDenied", err)
	}
	if got := listAll(t, ns, "/t", true, 2); len(got) != 4 {
		t.Fatalf("the system's ls -R /t: %v", got)
	}
	check(t, ns)
}

// TestLearnAheadPerListing: a listing's learn-aheads run up to aheadDepth
// pages ahead of it and go on as it asks for pages; whether a listing
// still learns ahead depends on its own tree, not on another listing's: a
// listing of a known tree beside one that is learning starts no
// learn-ahead.
func TestLearnAheadPerListing(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	for _, top := range []string{"t", "known"} {
		for d := range 6 {
			for f := range 6 {
				ufsWrite(t, ufsDir, fmt.Sprintf("%s/d%02d/f%d", top, d, f), 1)
			}
		}
	}
	j := &lazyJournal{}
	// One directory learned at a time: the learn-aheads' reach alone
	// (learning siblings at once is TestListLearnsSiblingsAtOnce's).
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g", learnWidth: 1}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)
	idle := func() {
		waitFor(t, func() bool {
			ns.aheadMu.Lock()
			defer ns.aheadMu.Unlock()
			return ns.aheadRun == 0
		})
	}
	loaded := func(p string) bool {
		ns.mu.RLock()
		defer ns.mu.RUnlock()
		d := ns.st.lookup(p)
		return d != nil && d.childrenLoaded()
	}
	listAll(t, ns, "/known", true, 5)
	idle()

	// Pages of 5 of /t: 1 is d00 and d00/f0..f3 (page 1 learns d00), 2
	// ends in d01/f1, 3 in d02, 4 in d02/f4, 5 in d03/f2. Two pages ahead
	// of page 1: d01 and d02 learned, not d03.
	p1 := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 5}))
	idle()
	if !loaded("/t/d01") || !loaded("/t/d02") || loaded("/t/d03") {
		t.Fatalf("after page 1: d01 %v, d02 %v, d03 %v learned; want the first two only (two pages ahead)",
			loaded("/t/d01"), loaded("/t/d02"), loaded("/t/d03"))
	}
	// A page of the known tree learns nothing: no learn-ahead for it.
	k1 := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/known", Recursive: true, PageSize: 5}))
	ns.aheadMu.Lock()
	st, running := ns.aheads[aheadKey{path: "/known", token: k1.NextPageToken}], ns.aheadRun
	ns.aheadMu.Unlock()
	if st != nil || running != 0 {
		t.Fatalf("a page of a known tree started a learn-ahead (state %v, %d running)", st, running)
	}
	// Pages 2 and 3 learn nothing themselves, but their listing is still
	// learning: its learn-aheads go on (page 5 needs d03).
	token := p1.NextPageToken
	for range 2 {
		token = must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 5, PageToken: token})).NextPageToken
	}
	idle()
	if !loaded("/t/d03") {
		t.Fatal("/t/d03 not learned ahead of page 5: the listing stopped learning ahead")
	}
	check(t, ns)
}

// gateFS counts the listings of leaf directories (/t/dNN) in flight and
// holds each until want of them are (or a timeout passes): a listing that
// learns directories one at a time never gets there.
type gateFS struct {
	ufs.FileSystem
	want int
	full chan struct{}
	mu   sync.Mutex
	in   int
	most int
}

func (g *gateFS) List(ctx context.Context, dir string, fn func(ufs.FileStatus) error) error {
	if strings.Contains(dir, "/d") {
		g.mu.Lock()
		g.in++
		g.most = max(g.most, g.in)
		if g.in == g.want {
			close(g.full)
		}
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.in--
			g.mu.Unlock()
		}()
		select {
		case <-g.full:
		case <-time.After(5 * time.Second):
		}
	}
	return g.FileSystem.List(ctx, dir, fn)
}

// TestListLearnsSiblingsAtOnce: a recursive listing that must learn a
// directory learns the next ones its walk meets at the same time, up to
// learnWidth at once and never more; the listing's order is unchanged and
// every UFS entry is journaled once.
func TestListLearnsSiblingsAtOnce(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	const dirs, files = 10, 3
	want := flatTree(t, ufsDir, dirs, files)
	j := &lazyJournal{}
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)
	ns.mu.RLock()
	m, _ := ns.st.mountOf("/")
	m = cloneMount(m)
	ns.mu.RUnlock()
	fs, err := ns.fsFor(bg, m)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateFS{FileSystem: fs, want: learnWidth, full: make(chan struct{})}
	ns.ufsMu.Lock()
	ns.ufs[m.GetMountId()] = g
	ns.ufsMu.Unlock()

	// One page holds the whole tree: no learn-ahead, the listing alone.
	resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 1000}))
	var got []string
	for _, fi := range resp.Infos {
		got = append(got, fi.Path)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || resp.NextPageToken != "" {
		t.Fatalf("ls -R /t\n got %v (next %q)\nwant %v", got, resp.NextPageToken, want)
	}
	g.mu.Lock()
	most := g.most
	g.mu.Unlock()
	if most != learnWidth {
		t.Fatalf("%d directories learned at once at most, want %d (learnWidth)", most, learnWidth)
	}
	check(t, ns)
	wantLearnedOnce(t, ns, j, dirs, files)
}

// TestListLearnsDeepTreeInOrder: learning several directories at once
// (siblings, cousins, the next chains) leaves a recursive listing's order
// and pages as they are, whatever the page size: pre-order, children by
// name, every entry once, each page ending where the next begins.
func TestListLearnsDeepTreeInOrder(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	for c := range 3 {
		p := fmt.Sprintf("t/c%d", c)
		for l := range 4 {
			p += fmt.Sprintf("/l%d", l)
			for f := range l % 3 {
				ufsWrite(t, ufsDir, fmt.Sprintf("%s/f%d", p, f), 1)
			}
		}
	}
	for d := range 5 {
		for e := range 2 {
			ufsWrite(t, ufsDir, fmt.Sprintf("t/w/d%d/e%d/f", d, e), 1)
		}
	}
	var want []string
	root := filepath.Join(ufsDir, "t")
	if err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err == nil && p != root {
			want = append(want, "/t/"+filepath.ToSlash(p[len(root)+1:]))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, page := range []int32{1, 2, 3, 5, 8, 13, 1000} {
		j := &lazyJournal{}
		ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
		if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
			t.Fatal(err)
		}
		got := listAll(t, ns, "/t", true, page)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pages of %d: ls -R /t\n got %v\nwant %v", page, got, want)
		}
		ns.stopAhead()
		check(t, ns)
		ns.closeUFS()
	}
}
