package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// writeFile creates and completes p (parents made) through fs.
func writeFile(t testing.TB, fs api.FileSystemMasterClient, p string, length int64) *api.FileInfo {
	t.Helper()
	ctx := context.Background()
	fi := must(fs.CreateFile(ctx, &api.CreateFileRequest{Path: p, Recursive: true, WriteType: api.WriteType_MUST_CACHE}))
	return must(fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: length, FileId: fi.Info.FileId})).Info
}

// drain reads the feed under p from after until it has want events (or
// the deadline passes) and returns them with the cursor to resume from.
func drain(t testing.TB, fs api.FileSystemMasterClient, p string, after int64, want int) ([]*api.CompletionEvent, int64) {
	t.Helper()
	var got []*api.CompletionEvent
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("feed %s after %d: %d events, want %d: %v", p, after, len(got), want, got)
		}
		resp, err := fs.WatchCompletions(context.Background(), &api.WatchCompletionsRequest{Path: p, After: after, WaitMs: 1000, MaxEvents: int32(min(7, want-len(got)))})
		if err != nil {
			t.Fatalf("feed %s after %d: %v", p, after, err)
		}
		got = append(got, resp.GetEvents()...)
		after = resp.GetCursor()
	}
	return got, after
}

func eventPaths(es []*api.CompletionEvent) []string {
	var out []string
	for i, e := range es {
		if i > 0 && e.GetSequence() <= es[i-1].GetSequence() {
			panic(fmt.Sprintf("events out of order: %v", es))
		}
		out = append(out, e.GetPath())
	}
	return out
}

// TestCompletionFeed: completions under a path come in journal order with
// their ids and lengths, pages resume from the cursor, a long poll answers
// when a file completes, and a restart (from a checkpoint plus the journal
// after it) keeps every cursor meaningful: nothing lost, nothing repeated.
func TestCompletionFeed(t *testing.T) {
	cfg := testConfig(t, nil)
	tm := startMaster(t, cfg)
	ctx := context.Background()
	var want []string
	for i := range 10 {
		p := fmt.Sprintf("/landing/d%d/f%d", i%3, i)
		fi := writeFile(t, tm.fs, p, int64(i))
		writeFile(t, tm.fs, fmt.Sprintf("/other/f%d", i), 1)
		want = append(want, p)
		if i == 0 {
			// An incomplete file is no event; a directory neither.
			must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: "/landing/open", WriteType: api.WriteType_MUST_CACHE}))
			must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/landing/dir"}))
			if fi.GetLength() != 0 {
				t.Fatal(fi)
			}
		}
	}
	got, cursor := drain(t, tm.fs, "/landing", 0, 10)
	if !slices.Equal(eventPaths(got), want) {
		t.Fatalf("events %v, want %v", eventPaths(got), want)
	}
	for i, e := range got {
		if e.GetLength() != int64(i) || e.GetFileId() == 0 || e.GetTimeMs() == 0 {
			t.Fatalf("event %d: %v", i, e)
		}
	}
	// Nothing more: an answer at once with the same or a later cursor.
	resp := must(tm.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "/landing", After: cursor}))
	if len(resp.Events) != 0 || resp.Cursor < cursor {
		t.Fatalf("after the last: %v", resp)
	}
	cursor = resp.Cursor
	if now := must(tm.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "/landing", FromNow: true})); len(now.Events) != 0 || now.Cursor < cursor {
		t.Fatalf("from now: %v", now)
	}

	// A long poll answers when a file completes.
	type answer struct {
		r   *api.WatchCompletionsResponse
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		r, err := tm.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "/landing", After: cursor, WaitMs: 60000})
		ch <- answer{r, err}
	}()
	writeFile(t, tm.fs, "/other/unrelated", 1) // wakes it; it keeps waiting
	late := writeFile(t, tm.fs, "/landing/late", 5)
	a := <-ch
	if a.err != nil || len(a.r.Events) != 1 || a.r.Events[0].GetPath() != "/landing/late" || a.r.Events[0].GetFileId() != late.GetFileId() {
		t.Fatalf("long poll: %v %v", a.r, a.err)
	}
	cursor = a.r.Cursor

	// A checkpoint, more completions, a restart: the feed holds the same.
	must(tm.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	writeFile(t, tm.fs, "/landing/after-ckpt", 1)
	all, _ := drain(t, tm.fs, "/", 0, 23)
	tm.stop(t)
	tm2 := startMaster(t, cfg)
	if !tm2.logged("loaded checkpoint") {
		t.Fatal("the restart did not load the checkpoint")
	}
	again, _ := drain(t, tm2.fs, "/", 0, 23)
	if !slices.EqualFunc(all, again, func(a, b *api.CompletionEvent) bool { return a.String() == b.String() }) {
		t.Fatalf("after restart the feed holds\n%v\nwant\n%v", again, all)
	}
	rest, _ := drain(t, tm2.fs, "/landing", cursor, 1)
	if len(rest) != 1 || rest[0].GetPath() != "/landing/after-ckpt" {
		t.Fatalf("resumed after restart: %v", rest)
	}

	// Bad requests.
	_, err := tm2.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "/landing", After: 1 << 40})
	wantCode(t, err, codes.OutOfRange, "a cursor ahead of the journal")
	_, err = tm2.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "/landing", MaxEvents: 100000})
	wantCode(t, err, codes.InvalidArgument, "max_events too big")
	_, err = tm2.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "/landing", WaitMs: -1})
	wantCode(t, err, codes.InvalidArgument, "negative wait")
	_, err = tm2.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{Path: "landing/../../x"})
	wantCode(t, err, codes.InvalidArgument, "a bad path")
}

// TestCompletionFeedRetention: a cursor older than what the master keeps
// is refused with OutOfRange and the COMPLETIONS_EXPIRED reason, naming
// where to resume; a checkpoint keeps the floor.
func TestCompletionFeedRetention(t *testing.T) {
	ns, j, _ := newTestNS(t)
	ns.st.done.max = 3
	for i := range 5 {
		create(t, ns, fmt.Sprintf("/f%d", i), 1)
	}
	ns.feed.advance(j.seq)
	_, err := ns.WatchCompletions(bg, &api.WatchCompletionsRequest{})
	wantCode(t, err, codes.OutOfRange, "a cursor before the retention")
	var reason string
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			reason = ei.GetReason()
		}
	}
	if reason != api.ReasonCompletionsExpired {
		t.Fatalf("reason %q in %v", reason, err)
	}
	resp := must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{After: ns.st.done.floor}))
	if got := eventPaths(resp.Events); !slices.Equal(got, []string{"/f2", "/f3", "/f4"}) || resp.Oldest != ns.st.done.floor {
		t.Fatalf("from the floor: %v (%v)", got, resp)
	}
	// Only durable entries are served.
	create(t, ns, "/f5", 1)
	resp = must(ns.WatchCompletions(bg, &api.WatchCompletionsRequest{After: resp.Cursor}))
	if len(resp.Events) != 0 {
		t.Fatalf("an entry not yet durable was served: %v", resp)
	}
}

// TestCompletionFeedPermissions: a user sees completions only where it
// may search every directory above them, and may not watch a directory
// it cannot list.
func TestCompletionFeedPermissions(t *testing.T) {
	ns := newPermNS(t, true)
	ns.feed.advance(ns.st.lastSeq)
	seen := func(user, p string) []string {
		resp, err := ns.WatchCompletions(as(user), &api.WatchCompletionsRequest{Path: p})
		if err != nil {
			t.Fatalf("%s watches %s: %v", user, p, err)
		}
		return eventPaths(resp.Events)
	}
	if got := seen("root", "/"); !slices.Contains(got, "/home/bob/f") || !slices.Contains(got, "/pub/f") {
		t.Fatalf("root sees %v", got)
	}
	got := seen("alice", "/")
	if slices.Contains(got, "/home/bob/f") || slices.Contains(got, "/tmpw/x/priv/f") || !slices.Contains(got, "/pub/f") || !slices.Contains(got, "/proj/f") {
		t.Fatalf("alice sees %v", got)
	}
	if got := seen("carol", "/"); slices.Contains(got, "/proj/f") {
		t.Fatalf("carol (not in staff) sees %v", got)
	}
	_, err := ns.WatchCompletions(as("alice"), &api.WatchCompletionsRequest{Path: "/home/bob"})
	wantCode(t, err, codes.PermissionDenied, "alice watches bob's home")
	_, err = ns.WatchCompletions(as("alice"), &api.WatchCompletionsRequest{Path: "/home/bob/nothing"})
	wantCode(t, err, codes.PermissionDenied, "alice watches a path in bob's home")
}

// TestEmbeddedCompletionFeedFailover: with an embedded journal the feed's
// cursors are the group's: after the leader stops, the new leader serves
// the same events before the cursor and the next ones after it, nothing
// lost or repeated — and a member restored from a raft snapshot holds
// them too.
func TestEmbeddedCompletionFeedFailover(t *testing.T) {
	c := newRaftCluster(t, 3, map[string]any{
		"fsmaster.raft.snapshot-threshold": 8,
		"fsmaster.raft.trailing-logs":      4,
		"fsmaster.raft.snapshot-interval":  "100ms",
	})
	l := c.leader()
	var want []string
	for i := range 20 {
		p := fmt.Sprintf("/landing/f%02d", i)
		writeFile(t, c.fs(l), p, 1)
		want = append(want, p)
	}
	got, cursor := drain(t, c.fs(l), "/landing", 0, 10)
	if !slices.Equal(eventPaths(got), want[:10]) {
		t.Fatalf("first half %v", eventPaths(got))
	}
	// A member that comes back from a snapshot holds the events too.
	down := (l + 1) % 3
	c.stop(down)
	for i := 20; i < 30; i++ {
		p := fmt.Sprintf("/landing/f%02d", i)
		writeFile(t, c.fs(l), p, 1)
		want = append(want, p)
	}
	must(c.fs(l).Checkpoint(context.Background(), &api.CheckpointRequest{}))
	if err := c.masters[l].emb.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("leader snapshot: %v", err)
	}
	c.start(down)
	seq := c.settled(0)
	c.stop(l)
	nl := c.leader(l)
	c.settled(seq)
	rest, _ := drain(t, c.fs(nl), "/landing", cursor, 20)
	if !slices.Equal(eventPaths(rest), want[10:]) {
		t.Fatalf("after failover from cursor %d: %v, want %v", cursor, eventPaths(rest), want[10:])
	}
	all, _ := drain(t, c.fs(nl), "/landing", 0, 30)
	if !slices.Equal(eventPaths(all), want) {
		t.Fatalf("whole feed on the new leader: %v", eventPaths(all))
	}
	// A standby refuses the feed, naming the leader (the client follows).
	other := 3 - l - nl
	if c.masters[other] != nil {
		_, err := c.fs(other).WatchCompletions(context.Background(), &api.WatchCompletionsRequest{})
		wantCode(t, err, codes.Unavailable, "the feed on a standby")
	}
}

// TestCompletionsStampDropInWrappedRing: an append that failed drops its
// events, the newest, also once the ring has wrapped (the newest is then
// before head, not at the slice's end): the rest stay in order, none
// unstamped, and a cursor finds the right place.
func TestCompletionsStampDropInWrappedRing(t *testing.T) {
	c := &completions{max: 3}
	for seq := int64(1); seq <= 4; seq++ { // 4 wraps the ring of 3
		c.add(completion{seq: seq})
	}
	c.add(completion{}) // live, not stamped yet
	c.stamp(0)          // its append failed
	var got []int64
	for i := range c.len() {
		got = append(got, c.at(i).seq)
	}
	if want := []int64{3, 4}; !slices.Equal(got, want) {
		t.Fatalf("after the failed append: %v, want %v", got, want)
	}
	if i := c.after(3); i != 1 || c.at(i).seq != 4 {
		t.Fatalf("after(3) = %d", i)
	}
	c.add(completion{seq: 6})
	c.stamp(6)
	if i := c.after(4); i != 2 || c.at(i).seq != 6 {
		t.Fatalf("after(4) = %d after a new event", i)
	}
}
