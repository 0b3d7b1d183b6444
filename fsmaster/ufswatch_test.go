package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// feedOf is every event of the State's feed, as "source:path".
func feedOf(s *State) []string {
	var out []string
	for i := range s.done.len() {
		e := s.done.at(i).event()
		out = append(out, e.GetSource()+":"+e.GetPath())
	}
	return out
}

// TestAnnounceRule: what a listing learns from the UFS is a completion
// event (source ufs) when it is news — new or changed in a directory
// already listed, or anywhere in a directory that itself appeared so —
// and not when it is a directory's first listing; a file written through
// Alluvium is one event (source write), never a second when the UFS holds
// it. Replaying the journal gives the same events, and a checkpoint keeps
// them and the directories whose first listing is still news.
func TestAnnounceRule(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	ufsWrite(t, ufsDir, "d/old", 10)
	ufsWrite(t, ufsDir, "d/sub/x", 10)
	names(t, ns, "/d", api.LoadMetadataType_ONCE)
	names(t, ns, "/d/sub", api.LoadMetadataType_ONCE)
	if got := feedOf(ns.st); len(got) != 0 {
		t.Fatalf("first listings announced %v", got)
	}
	// Behind Alluvium's back: a new file, a changed one, a new tree.
	ufsWrite(t, ufsDir, "d/new", 3)
	ufsWrite(t, ufsDir, "d/old", 20)
	ufsWrite(t, ufsDir, "d/tree/y", 1)
	ufsWrite(t, ufsDir, "d/tree/deeper/z", 1)
	names(t, ns, "/d", api.LoadMetadataType_ALWAYS)
	want := []string{"ufs:/d/new", "ufs:/d/old"}
	if got := feedOf(ns.st); !slices.Equal(got, want) {
		t.Fatalf("re-sync announced %v, want %v", got, want)
	}
	tree := ns.st.lookup("/d/tree")
	if tree == nil || !ns.st.isFresh(tree.id) {
		t.Fatal("a directory that appeared is not fresh")
	}
	// A checkpoint here keeps the fresh directory.
	ck, err := journal.WriteCheckpoint(t.TempDir(), ns.st.LastSequence(), ns.st.WriteCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := loadCheckpointFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.isFresh(tree.id) || !slices.Equal(feedOf(loaded), want) {
		t.Fatalf("checkpoint: fresh %v, feed %v", loaded.isFresh(tree.id), feedOf(loaded))
	}
	// Its first listing is news, and so is its subdirectory's.
	names(t, ns, "/d/tree", api.LoadMetadataType_ONCE)
	names(t, ns, "/d/tree/deeper", api.LoadMetadataType_ONCE)
	want = append(want, "ufs:/d/tree/y", "ufs:/d/tree/deeper/z")
	if got := feedOf(ns.st); !slices.Equal(got, want) {
		t.Fatalf("fresh listings announced %v, want %v", got, want)
	}
	if len(ns.st.fresh) != 0 {
		t.Fatalf("listed directories still fresh: %v", ns.st.fresh)
	}
	// Through Alluvium, persisted to the UFS: one event, not two.
	fi := must(ns.CreateFile(bg, &api.CreateFileRequest{Path: "/d/mine", WriteType: api.WriteType_CACHE_THROUGH}))
	ufsWrite(t, ufsDir, "d/mine", 7)
	st, err := os.Stat(filepath.Join(ufsDir, "d/mine"))
	if err != nil {
		t.Fatal(err)
	}
	// A re-sync while it is being written does not learn over it.
	names(t, ns, "/d", api.LoadMetadataType_ALWAYS)
	must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/mine", FileId: fi.FileId, Length: 7,
		UfsFingerprint: fmt.Sprintf("%d:%d", st.Size(), st.ModTime().UnixNano())}))
	names(t, ns, "/d", api.LoadMetadataType_ALWAYS)
	names(t, ns, "/d", api.LoadMetadataType_ALWAYS)
	want = append(want, "write:/d/mine")
	if got := feedOf(ns.st); !slices.Equal(got, want) {
		t.Fatalf("after a write through Alluvium: %v, want %v", got, want)
	}
	// A stat that syncs one path in a listed directory is a re-sync too.
	ufsWrite(t, ufsDir, "d/stat-me", 2)
	must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/d/stat-me", LoadMetadataType: api.LoadMetadataType_ALWAYS}))
	want = append(want, "ufs:/d/stat-me")
	if got := feedOf(ns.st); !slices.Equal(got, want) {
		t.Fatalf("after a stat: %v, want %v", got, want)
	}

	// Replay: the journal applied to an empty State gives the same feed.
	re := NewState()
	for _, e := range j.entries {
		if err := re.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	if got := feedOf(re); !slices.Equal(got, want) {
		t.Fatalf("replay: %v, want %v", got, want)
	}
	for i := range re.done.len() {
		if a, b := re.done.at(i), ns.st.done.at(i); *a != *b {
			t.Fatalf("replayed event %d: %+v, live %+v", i, *a, *b)
		}
	}
	ck, err = journal.WriteCheckpoint(t.TempDir(), re.LastSequence(), re.WriteCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	if loaded, err = loadCheckpointFile(ck); err != nil || !slices.Equal(feedOf(loaded), want) {
		t.Fatalf("checkpoint of the replay: %v %v", feedOf(loaded), err)
	}
}

// TestBaselineAnnouncesNothing: a from-now cursor lists the watched tree
// first, so the files that were there are not news to a later re-sync;
// what appears afterwards is.
func TestBaselineAnnouncesNothing(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	ns.cfg.watch = ufsWatchConfig{enabled: true, maxDirs: 100}
	for i := range 3 {
		ufsWrite(t, ufsDir, fmt.Sprintf("land/a%d/f", i), 1)
	}
	ns.feed.advance(j.seq)
	// /land is not known yet: a listing of / learns it (unloaded).
	names(t, ns, "/", api.LoadMetadataType_ONCE)
	now := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/land", FromNow: true}))
	ufsWrite(t, ufsDir, "land/a1/g", 1)
	ufsWrite(t, ufsDir, "land/a2/h/i", 1)
	for _, d := range []string{"/land", "/land/a0", "/land/a1", "/land/a2"} {
		names(t, ns, d, api.LoadMetadataType_ALWAYS)
	}
	names(t, ns, "/land/a2/h", api.LoadMetadataType_ONCE)
	ns.feed.advance(j.seq)
	resp := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/land", After: now.Cursor}))
	if got := eventPaths(resp.Events); !slices.Equal(got, []string{"/land/a1/g", "/land/a2/h/i"}) {
		t.Fatalf("after the baseline: %v", got)
	}
}

// TestUFSWatchLocal: with the watcher running, files dropped into a local
// UFS directory under a watched path — written at once, written slowly in
// chunks, in a new subdirectory — reach the feed, each exactly once.
func TestUFSWatchLocal(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	startWatch(t, ns, j, ufsWatchConfig{enabled: true, interval: time.Hour, settle: 20 * time.Millisecond, maxDirs: 100})
	ufsWrite(t, ufsDir, "land/before", 1)
	names(t, ns, "/", api.LoadMetadataType_ONCE)
	now := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/land", FromNow: true}))
	var want []string
	for i := range 20 {
		ufsWrite(t, ufsDir, fmt.Sprintf("land/f%02d", i), i)
		want = append(want, fmt.Sprintf("/land/f%02d", i))
	}
	var got []*api.CompletionEvent
	cursor := now.Cursor
	collect := func(n int) {
		waitFor(t, func() bool {
			resp := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/land", After: cursor}))
			got = append(got, resp.Events...)
			cursor = resp.Cursor
			return len(got) >= n
		})
	}
	// Wait until those are announced: then the prefix's catch-up walk has
	// listed /land (only its listings, or later ones, announce), and the
	// watcher reads /land's inotify events — the slow file below is seen
	// busy, not listed half-written by a catch-up still under way.
	collect(len(want))
	// Slowly, in chunks, with one open file.
	f, err := os.Create(filepath.Join(ufsDir, "land/slow"))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := f.WriteString(strings.Repeat("s", 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond) // longer than settle: the chunks are apart
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, "/land/slow")
	ufsWrite(t, ufsDir, "land/sub/a", 1)
	ufsWrite(t, ufsDir, "land/sub/deep/b", 1)
	want = append(want, "/land/sub/a", "/land/sub/deep/b")
	slices.Sort(want)
	collect(len(want))
	// Nothing more: a forced re-sync of every directory finds nothing new
	// (a file learned half-written would be replaced now, a second event).
	for _, d := range []string{"/land", "/land/sub", "/land/sub/deep"} {
		names(t, ns, d, api.LoadMetadataType_ALWAYS)
	}
	j.mu.Lock()
	ns.feed.advance(j.seq)
	j.mu.Unlock()
	got = append(got, must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/land", After: cursor})).Events...)
	paths := eventPaths(got)
	slices.Sort(paths)
	if !slices.Equal(paths, want) {
		t.Fatalf("events %v, want %v", paths, want)
	}
	for _, e := range got {
		if e.GetSource() != sourceUFS {
			t.Fatalf("event %v: source %q", e, e.GetSource())
		}
		if e.GetPath() == "/land/slow" && e.GetLength() != 500 {
			t.Fatalf("the slow file was announced at %d bytes", e.GetLength())
		}
	}
}

// waitFor polls cond for up to 60 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startWatch runs a UFS watcher over ns for the test, with the feed's
// durable watermark following the memJournal, and returns the watcher and
// its logs.
func startWatch(t *testing.T, ns *namespace, j *memJournal, cfg ufsWatchConfig) (*ufsWatch, *observer.ObservedLogs) {
	t.Helper()
	ns.cfg.watch = cfg
	core, logs := observer.New(zap.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	w := newUFSWatch(ctx, ns, cfg, zap.New(core))
	ns.ufsw.Store(w)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			j.mu.Lock()
			seq := j.seq
			j.mu.Unlock()
			ns.feed.advance(seq)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); w.wg.Wait(); wg.Wait() })
	return w, logs
}

// TestUFSWatchBounds: a watched path with more directories than max-dirs
// watches max-dirs of them and says so in an error naming the path and the
// key; a directory made only in Alluvium (not in the UFS) is watched once
// it appears there, at the next interval's walk.
func TestUFSWatchBounds(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	for i := range 5 {
		ufsWrite(t, ufsDir, fmt.Sprintf("wide/d%d/f", i), 1)
	}
	must(ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/late", WriteType: api.WriteType_MUST_CACHE}))
	names(t, ns, "/", api.LoadMetadataType_ONCE)
	w, logs := startWatch(t, ns, j, ufsWatchConfig{enabled: true, interval: 50 * time.Millisecond, settle: 10 * time.Millisecond, maxDirs: 3})
	w.touch("/wide")
	waitFor(t, func() bool {
		for _, e := range logs.FilterMessageSnippet("too many directories to watch").All() {
			if e.ContextMap()["path"] == "/wide" && e.ContextMap()["max-dirs"] == int64(3) {
				return true
			}
		}
		return false
	})
	if _, err := os.Stat(filepath.Join(ufsDir, "late")); err == nil {
		t.Fatal("a MUST_CACHE directory is in the UFS")
	}
	now := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/late", FromNow: true}))
	// Its walk finds it absent from the UFS; once it is there, a file
	// dropped in it is learned (by a later walk's listing, then inotify).
	waitFor(t, func() bool {
		return logs.FilterMessage("watched directory not in the UFS yet").FilterField(zap.String("path", "/late")).Len() > 0
	})
	ufsWrite(t, ufsDir, "late/x", 1)
	waitFor(t, func() bool {
		resp := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{Path: "/late", After: now.Cursor}))
		return len(resp.Events) == 1 && resp.Events[0].GetPath() == "/late/x"
	})
}

// TestUFSWatchListingReadsQueuedEvents: a listing first handles the
// inotify events already queued, so a file whose writer still has it open
// is not learned half-written even when its events arrived while the
// watcher was busy listing (a long catch-up walk), and is learned whole
// once closed.
func TestUFSWatchListingReadsQueuedEvents(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	ufsWrite(t, ufsDir, "land/before", 1)
	names(t, ns, "/", api.LoadMetadataType_ONCE)
	names(t, ns, "/land", api.LoadMetadataType_ONCE) // listed: the next listing is a re-sync
	// settle 0: without the busy mark, a listing would learn the file.
	w, _ := startWatch(t, ns, j, ufsWatchConfig{enabled: true, interval: time.Hour, maxDirs: 100})
	w.mu.Lock()
	w.prefixes["/land"] = &watchedPrefix{last: time.Now(), cancel: func() {}}
	w.mu.Unlock()
	r := &prefixRun{w: w, p: "/land", wds: map[int32]string{}, dirs: map[string]int32{}, due: map[string]struct{}{}}
	t.Cleanup(func() {
		if r.in != nil {
			r.in.close()
		}
	})
	r.watch(bg, "/land")
	if r.in == nil || r.dirs["/land"] < 0 {
		t.Skip("inotify unavailable here")
	}
	f, err := os.Create(filepath.Join(ufsDir, "land/open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("half"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(r.in.events) > 0 }) // queued, not handled
	if !r.load(bg, "/land") {
		t.Fatal("listing /land failed")
	}
	if ns.st.lookup("/land/open") != nil {
		t.Fatal("a file still open for writing was learned: the queued events were not read before the listing")
	}
	if _, err := f.WriteString(" and the rest"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		r.drain()
		_, due := r.due["/land"]
		return due
	})
	if !r.load(bg, "/land") {
		t.Fatal("listing /land failed")
	}
	n := ns.st.lookup("/land/open")
	if n == nil || n.length != int64(len("half and the rest")) {
		t.Fatalf("after its close: %+v", n)
	}
}
