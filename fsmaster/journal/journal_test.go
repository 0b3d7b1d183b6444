package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// entry returns a test entry whose content identifies i.
func entry(i int64) *api.JournalEntry {
	return &api.JournalEntry{
		OpTimeMs: 1_700_000_000_000 + i,
		Body: &api.JournalEntry_InodeDirectory{InodeDirectory: &api.InodeDirectoryEntry{
			Id: i, ParentId: i / 2, Name: fmt.Sprintf("dir-%d", i), Mode: 0o755, Owner: "alice",
		}},
	}
}

func openJournal(t testing.TB, opts Options) *Journal {
	t.Helper()
	j, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// appendN appends n entries one after the other (one fsync each) and
// returns them.
func appendN(t testing.TB, j *Journal, n int) []*api.JournalEntry {
	t.Helper()
	var out []*api.JournalEntry
	for i := 0; i < n; i++ {
		e := entry(j.LastSequence() + 1)
		if err := j.Append(e).Wait(context.Background()); err != nil {
			t.Fatalf("append: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// appendConcurrent appends n entries from g goroutines and returns them
// sorted by sequence.
func appendConcurrent(t testing.TB, j *Journal, g, n int) []*api.JournalEntry {
	t.Helper()
	var mu sync.Mutex
	var out []*api.JournalEntry
	var wg sync.WaitGroup
	errs := make(chan error, g)
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += g {
				e := entry(int64(i))
				if err := j.Append(e).Wait(context.Background()); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				out = append(out, e)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Sequence < out[b].Sequence })
	return out
}

func replayAll(t testing.TB, j *Journal, after int64) []*api.JournalEntry {
	t.Helper()
	var out []*api.JournalEntry
	if err := j.Replay(context.Background(), after, func(e *api.JournalEntry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Replay(after %d): %v", after, err)
	}
	return out
}

// sameEntries fails unless got == want entry by entry.
func sameEntries(t testing.TB, got, want []*api.JournalEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func observed(level zapcore.Level) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(level)
	return zap.New(core), logs
}

func TestAppendReplayRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 128})
	if got := j.LastSequence(); got != 0 {
		t.Fatalf("fresh journal LastSequence = %d, want 0", got)
	}
	want := appendN(t, j, 100)
	want = append(want, appendConcurrent(t, j, 8, 300)...)
	for i, e := range want {
		if e.Sequence != int64(i+1) {
			t.Fatalf("entry %d got sequence %d", i, e.Sequence)
		}
	}
	if got := j.LastSequence(); got != 400 {
		t.Fatalf("LastSequence = %d, want 400", got)
	}
	sameEntries(t, replayAll(t, j, 0), want)
	sameEntries(t, replayAll(t, j, 250), want[250:])
	sameEntries(t, replayAll(t, j, 400), nil)
	if err := j.Replay(context.Background(), 401, func(*api.JournalEntry) error { return nil }); err == nil {
		t.Fatal("Replay after the end of the journal succeeded")
	}
	// fn's error stops the replay and comes back.
	stop := errors.New("stop")
	n := 0
	if err := j.Replay(context.Background(), 0, func(*api.JournalEntry) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) || n != 10 {
		t.Fatalf("Replay with failing fn: err %v after %d entries", err, n)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j2 := openJournal(t, Options{Dir: dir, SegmentEntries: 128})
	if got := j2.LastSequence(); got != 400 {
		t.Fatalf("after reopen LastSequence = %d, want 400", got)
	}
	sameEntries(t, replayAll(t, j2, 0), want)
	more := appendN(t, j2, 5)
	if more[0].Sequence != 401 {
		t.Fatalf("first append after reopen got sequence %d, want 401", more[0].Sequence)
	}
	sameEntries(t, replayAll(t, j2, 0), append(want, more...))
}

func TestAppendAfterCloseFails(t *testing.T) {
	j := openJournal(t, Options{Dir: t.TempDir()})
	appendN(t, j, 1)
	j.Close()
	if err := j.Append(entry(2)).Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if err := j.Rotate(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rotate after Close: %v, want ErrClosed", err)
	}
	if err := j.Append(nil).Wait(context.Background()); err == nil {
		t.Fatal("Append(nil) succeeded")
	}
}

func TestGroupCommitGroups(t *testing.T) {
	// Without a linger the writer commits whatever is queued the moment it
	// is free, so closed-loop appenders settle into groups that alternate
	// (one fsynced while the others queue); with one (the default: many
	// callers, each waiting for its entry), it waits for the callers it
	// released, and they share one fsync.
	for _, c := range []struct {
		name   string
		linger time.Duration
		min    float64
	}{{"no-linger", -1, 8}, {"linger", 0, 30}} {
		t.Run(c.name, func(t *testing.T) {
			j := openJournal(t, Options{Dir: t.TempDir(), MaxLinger: c.linger})
			const appenders, each = 64, 40
			appendConcurrent(t, j, appenders, appenders*each)
			st := j.Stats()
			t.Logf("stats: %+v, %.1f entries per fsync", st, st.EntriesPerFsync())
			if st.Entries != appenders*each || st.LastSequence != appenders*each {
				t.Fatalf("stats %+v, want %d entries", st, appenders*each)
			}
			// One fsync per entry would be 1; 64 waiting appenders must
			// share.
			if st.EntriesPerFsync() < c.min {
				t.Fatalf("%.1f entries per fsync with %d concurrent appenders, want at least %.0f; group commit is not grouping", st.EntriesPerFsync(), appenders, c.min)
			}
		})
	}
}

func TestGroupCommitWaitsForBatches(t *testing.T) {
	// Batch callers (an SDK client's joined calls: each appends its
	// entries under a Hold and waits for the last): a commit that released
	// several of them waits for most of the entries they carry to come
	// back, so the next fsync carries them rather than alternating with
	// them; a lone batch caller is never waited for.
	for _, c := range []struct {
		name           string
		callers, batch int
		minPerFsync    float64
		maxPerFsync    float64
	}{
		// 8 callers of 8: 64 entries in flight, three quarters waited for.
		// Without the wait they split into two groups of about 32.
		{"several", 8, 8, 44, 64},
		// One caller of 16 entries in a closed loop: 200 commits, none
		// waiting out MaxLinger (a second) for a caller who is not coming.
		{"lone", 1, 16, 16, 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := openJournal(t, Options{Dir: t.TempDir(), MaxLinger: time.Second})
			const n = 200 // batches in all, shared out among the callers
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, c.callers)
			for range c.callers {
				wg.Go(func() {
					for range n / c.callers {
						release := j.Hold()
						var last *Pending
						for range c.batch {
							last = j.Append(entry(0))
						}
						release()()
						if err := last.Wait(context.Background()); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			took := time.Since(start)
			st := j.Stats()
			t.Logf("stats: %+v, %.1f entries per fsync, %v", st, st.EntriesPerFsync(), took)
			if want := int64(n * c.batch); st.Entries != want {
				t.Fatalf("%d entries durable, want %d", st.Entries, want)
			}
			if f := st.EntriesPerFsync(); f < c.minPerFsync || f > c.maxPerFsync {
				t.Fatalf("%.1f entries per fsync from %d batch callers of %d entries, want %.0f to %.0f", f, c.callers, c.batch, c.minPerFsync, c.maxPerFsync)
			}
			// Any wait out of MaxLinger would be a second beyond the
			// commits. (Several callers' last commit is waited out: none
			// of them comes back after it.)
			if idle := took - st.CommitTime; c.callers == 1 && idle > 500*time.Millisecond {
				t.Fatalf("%d commits took %v, %v of it outside commits: the writer waited on the clock for a caller who was not coming", st.Batches, took, idle)
			}
		})
	}
}

func TestHoldKeepsEntriesTogether(t *testing.T) {
	// A batch call appends its entries one at a time; the writer must not
	// commit the first few while the rest are still being appended, or the
	// batch's callers wait for two fsyncs. Entries appended before the Hold
	// are not held back.
	j := openJournal(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	before := j.Append(entry(1))
	release := j.Hold()
	var held []*Pending
	for i := int64(2); i <= 11; i++ {
		held = append(held, j.Append(entry(i)))
		time.Sleep(time.Millisecond) // time enough for the writer to take a split batch
	}
	if err := before.Wait(ctx); err != nil {
		t.Fatalf("entry appended before the Hold: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	if st := j.Stats(); st.Entries != 1 {
		t.Fatalf("%d entries durable while 10 are held, want 1 (the one appended before the Hold)", st.Entries)
	}
	// A rotation asked for meanwhile waits for the release too.
	rotated := make(chan error, 1)
	go func() { rotated <- j.Rotate() }()
	time.Sleep(5 * time.Millisecond)
	b0 := j.Stats().Batches
	release()()
	for _, p := range held {
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("held entry %d: %v", p.Sequence(), err)
		}
	}
	if err := <-rotated; err != nil {
		t.Fatalf("Rotate during a Hold: %v", err)
	}
	if st := j.Stats(); st.Batches-b0 != 1 || st.Entries != 11 || st.Rotations != 1 {
		t.Fatalf("stats %+v after release: want the 10 held entries in one commit (batches %d before) and one rotation", st, b0)
	}
	sameEntries(t, replayAll(t, j, 0), func() []*api.JournalEntry {
		var want []*api.JournalEntry
		for i := int64(1); i <= 11; i++ {
			e := entry(i)
			e.Sequence = i
			want = append(want, e)
		}
		return want
	}())
}

func TestMaxBatchBoundsBatches(t *testing.T) {
	j := openJournal(t, Options{Dir: t.TempDir(), MaxBatch: 3})
	appendConcurrent(t, j, 32, 600)
	if st := j.Stats(); st.MaxBatch > 3 || st.MaxBatch < 1 {
		t.Fatalf("largest batch %d with MaxBatch 3", st.MaxBatch)
	}
}

func segNames(segs []SegmentInfo) []string {
	var out []string
	for _, s := range segs {
		out = append(out, filepath.Base(s.Path))
	}
	return out
}

// logFiles lists the files in dir's logs but the spare segment prepared
// ahead of a rotation (spareFiles), which comes and goes with the
// writer's progress.
func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, name := range allLogFiles(t, dir) {
		if !strings.HasPrefix(name, tmpPrefix+"spare-") {
			out = append(out, name)
		}
	}
	return out
}

func allLogFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// spareFiles lists the spare segments in dir's logs.
func spareFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, name := range allLogFiles(t, dir) {
		if strings.HasPrefix(name, tmpPrefix+"spare-") {
			out = append(out, name)
		}
	}
	return out
}

// A segment half full has its successor prepared in the background; the
// rotation renames it into place (the new open segment is that file),
// Close removes one not used, and Open removes one a crash left.
func TestRotationUsesTheSparePreparedAhead(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 100, MaxBatch: 10})
	var want []*api.JournalEntry
	add := func(n int) {
		for range n {
			e := entry(int64(len(want) + 1))
			p := j.Append(e)
			if err := p.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			want = append(want, e)
		}
	}
	add(60)
	// The spare is prepared once the open segment is half full.
	var spares []string
	for deadline := time.Now().Add(10 * time.Second); len(spares) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		spares = spareFiles(t, dir)
	}
	if len(spares) != 1 {
		t.Fatalf("spare segments %v after 60 of 100 entries, want one", spares)
	}
	st, err := os.Stat(filepath.Join(dir, "logs", spares[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the background preparation is done (its zeros written).
	for deadline := time.Now().Add(10 * time.Second); len(j.spares) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		st, _ = os.Stat(filepath.Join(dir, "logs", spares[0]))
	}
	if st.Size() < zeroChunk {
		t.Fatalf("spare is %d bytes, want its zeros (%d) written ahead", st.Size(), zeroChunk)
	}
	add(50) // rotates at 100
	open := filepath.Join(dir, "logs", "00000000000000000101-open.bolt")
	if got := spareFiles(t, dir); len(got) != 0 {
		t.Fatalf("spare segments %v after the rotation, want the spare renamed into place", got)
	}
	ost, err := os.Stat(open)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st, ost) {
		t.Fatalf("the open segment after the rotation is not the spare prepared ahead")
	}
	sameEntries(t, replayAll(t, j, 0), want)
	add(45) // 145 of 200 in the second segment: the next spare
	for deadline := time.Now().Add(10 * time.Second); len(spareFiles(t, dir)) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	// A crash (a copy of the dir as it is) leaves the spare; Open removes it.
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := spareFiles(t, dir); len(got) != 0 {
		t.Fatalf("spare segments %v after Close, want none", got)
	}
	if len(spareFiles(t, crashed)) == 0 {
		t.Fatalf("the crashed copy has no spare to remove")
	}
	for _, d := range []string{dir, crashed} {
		j2 := openJournal(t, Options{Dir: d, SegmentEntries: 100})
		if got := spareFiles(t, d); len(got) != 0 {
			t.Fatalf("spare segments %v after Open of %s, want none", got, d)
		}
		sameEntries(t, replayAll(t, j2, 0), want)
		j2.Close()
	}
}

func TestRotationAndDeleteCoveredSegments(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 100, MaxBatch: 64})
	want := appendConcurrent(t, j, 16, 350)
	segs := j.Segments()
	wantSegs := []SegmentInfo{
		{filepath.Join(dir, "logs", "00000000000000000001-00000000000000000100.bolt"), 1, 100, true},
		{filepath.Join(dir, "logs", "00000000000000000101-00000000000000000200.bolt"), 101, 200, true},
		{filepath.Join(dir, "logs", "00000000000000000201-00000000000000000300.bolt"), 201, 300, true},
		{filepath.Join(dir, "logs", "00000000000000000301-open.bolt"), 301, 350, false},
	}
	if fmt.Sprint(segs) != fmt.Sprint(wantSegs) {
		t.Fatalf("segments:\n got %v\nwant %v", segs, wantSegs)
	}
	if got, want := fmt.Sprint(logFiles(t, dir)), fmt.Sprint(segNames(wantSegs)); got != want {
		t.Fatalf("files in logs: %s, want %s", got, want)
	}
	if st := j.Stats(); st.Rotations != 3 {
		t.Fatalf("rotations = %d, want 3", st.Rotations)
	}

	// Rotate closes the open segment now; again with nothing new is a no-op.
	if err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	segs = j.Segments()
	if len(segs) != 5 || !segs[3].Closed || segs[3].Last != 350 || segs[4].Closed || segs[4].First != 351 || segs[4].Last != 350 {
		t.Fatalf("after Rotate: %v", segs)
	}

	// Entries appended while Rotate runs land somewhere; all survive.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); want = append(want, appendN(t, j, 20)...) }()
	if err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	sameEntries(t, replayAll(t, j, 0), want)

	n, err := j.DeleteCoveredSegments(250)
	if err != nil || n != 2 {
		t.Fatalf("DeleteCoveredSegments(250) = %d, %v; want 2", n, err)
	}
	if segs := j.Segments(); segs[0].First != 201 {
		t.Fatalf("after delete the oldest segment is %v", segs[0])
	}
	if err := j.Replay(context.Background(), 0, func(*api.JournalEntry) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "entry 1 is no longer") {
		t.Fatalf("Replay from a deleted segment: %v", err)
	}
	sameEntries(t, replayAll(t, j, 200), want[200:])

	// Everything covered: only closed segments go; the open one stays, so
	// the next sequence is still known after a restart.
	last := j.LastSequence()
	if _, err := j.DeleteCoveredSegments(last); err != nil {
		t.Fatal(err)
	}
	for _, s := range j.Segments() {
		if s.Closed && s.Last <= last {
			t.Fatalf("segment %v survived DeleteCoveredSegments(%d)", s, last)
		}
	}
	j.Close()
	j2 := openJournal(t, Options{Dir: dir, SegmentEntries: 100})
	if j2.LastSequence() != last {
		t.Fatalf("after deleting every closed segment and reopening, LastSequence = %d, want %d", j2.LastSequence(), last)
	}
	if e := appendN(t, j2, 1); e[0].Sequence != last+1 {
		t.Fatalf("next append got %d, want %d", e[0].Sequence, last+1)
	}
}

func TestReplayClosedSkipsOpenSegment(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 100})
	want := appendConcurrent(t, j, 4, 250) // 1-100, 101-200 closed; 201-250 open

	var got []*api.JournalEntry
	last, err := ReplayClosed(context.Background(), dir, 0, func(e *api.JournalEntry) error {
		got = append(got, e)
		return nil
	})
	if err != nil || last != 200 {
		t.Fatalf("ReplayClosed = %d, %v; want 200", last, err)
	}
	sameEntries(t, got, want[:200])

	got = nil
	last, err = ReplayClosed(context.Background(), dir, 150, func(e *api.JournalEntry) error {
		got = append(got, e)
		return nil
	})
	if err != nil || last != 200 {
		t.Fatalf("ReplayClosed(after 150) = %d, %v", last, err)
	}
	sameEntries(t, got, want[150:200])

	if last, err := ReplayClosed(context.Background(), dir, 200, func(*api.JournalEntry) error {
		t.Fatal("delivered an entry past the closed segments")
		return nil
	}); err != nil || last != 200 {
		t.Fatalf("ReplayClosed(after 200) = %d, %v", last, err)
	}

	// Once covered segments are deleted, asking for entries before them is
	// an error, not a silent skip.
	if _, err := j.DeleteCoveredSegments(100); err != nil {
		t.Fatal(err)
	}
	if _, err := ReplayClosed(context.Background(), dir, 50, func(*api.JournalEntry) error { return nil }); err == nil {
		t.Fatal("ReplayClosed over deleted entries succeeded")
	}
	// A journal dir with no logs yet: nothing, no error.
	if last, err := ReplayClosed(context.Background(), t.TempDir(), 7, nil); err != nil || last != 7 {
		t.Fatalf("ReplayClosed on an empty dir = %d, %v", last, err)
	}
}

func TestOpenRefusesLockedDir(t *testing.T) {
	dir := t.TempDir()
	openJournal(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open on a locked dir: %v", err)
	}
	if err := Format(dir, true); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Format --force of a journal in use: %v", err)
	}
}

func TestFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	if err := Format(dir, false); err != nil {
		t.Fatalf("Format of a new dir: %v", err)
	}
	j := openJournal(t, Options{Dir: dir})
	appendN(t, j, 3)
	j.Close()

	err := Format(dir, false)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Format of a non-empty dir without force: %v", err)
	}
	if j := openJournal(t, Options{Dir: dir}); j.LastSequence() != 3 {
		t.Fatalf("refused Format changed the journal: LastSequence %d", j.LastSequence())
	} else {
		j.Close()
	}
	if err := Format(dir, true); err != nil {
		t.Fatalf("Format --force: %v", err)
	}
	if j := openJournal(t, Options{Dir: dir}); j.LastSequence() != 0 {
		t.Fatalf("after Format --force LastSequence = %d", j.LastSequence())
	}

	// Lock files (a secondary started first) do not make a dir non-empty.
	fresh := t.TempDir()
	os.WriteFile(filepath.Join(fresh, "SECONDARY.LOCK"), nil, 0o644)
	if err := Format(fresh, false); err != nil {
		t.Fatalf("Format of a dir holding only a lock file: %v", err)
	}
	fresh = t.TempDir()
	os.WriteFile(filepath.Join(fresh, "SECONDARY.LOCK"), nil, 0o644)
	openJournal(t, Options{Dir: fresh}).Close()

	// A non-empty dir that is not a journal is not taken over by Open.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "precious.txt"), []byte("x"), 0o644)
	if _, err := Open(Options{Dir: other}); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("Open of a foreign non-empty dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "precious.txt")); err != nil {
		t.Fatal(err)
	}
}

// A writer asked to run at a higher priority commits as any other, whether
// the priority could be raised or not (then it says so, once), and counts
// its time in commits.
func TestWriterNice(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	j := openJournal(t, Options{Dir: t.TempDir(), WriterNice: -5, Logger: zap.New(core)})
	appendN(t, j, 3)
	appendConcurrent(t, j, 8, 64)
	st := j.Stats()
	if st.Entries != 67 || st.CommitTime <= 0 || st.CommitAvg() <= 0 {
		t.Fatalf("stats %+v: want 67 entries and the writer's time in commits", st)
	}
	if n := logs.FilterMessageSnippet("writer-nice not applied").Len(); n > 1 {
		t.Fatalf("the writer said %d times that it keeps its priority, want at most once", n)
	}
}
