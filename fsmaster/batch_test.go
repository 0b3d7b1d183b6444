package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// GetStatuses answers each path exactly as its GetStatus would: the same
// info or the same error (code and message naming the path), with each
// path's permissions checked for the caller.
func TestGetStatusesAnswerEachPathAsItsSingleCall(t *testing.T) {
	ns := newPermNS(t, true)
	reqs := []*api.GetStatusRequest{
		{Path: "/pub/f"}, {Path: "/home/bob/f"}, {Path: "/nope"}, {Path: "rel"},
		{Path: "/proj/f", Access: 4}, {Path: "/pub/f", Access: 2}, {Path: "/pub/f", Access: 9}, {Path: "/home"},
	}
	for _, user := range []string{"alice", "bob", "carol", ""} {
		ctx := as(user)
		resp, err := ns.GetStatuses(ctx, &api.GetStatusesRequest{Requests: reqs})
		if err != nil {
			t.Fatalf("%s: GetStatuses: %v", user, err)
		}
		if len(resp.GetResults()) != len(reqs) {
			t.Fatalf("%s: %d results for %d paths", user, len(resp.GetResults()), len(reqs))
		}
		var refused int
		for i, r := range reqs {
			info, err := ns.GetStatus(ctx, r)
			got := resp.GetResults()[i]
			st := status.Convert(err)
			if codes.Code(got.GetCode()) != st.Code() || got.GetError() != st.Message() {
				t.Errorf("%s: stat %s (access %d): batch says %s %q, single %s %q", user, r.Path, r.Access, codes.Code(got.GetCode()), got.GetError(), st.Code(), st.Message())
			}
			if err == nil && (got.GetInfo().GetFileId() != info.GetFileId() || got.GetInfo().GetPath() != info.GetPath()) {
				t.Errorf("%s: stat %s: batch info %v, single %v", user, r.Path, got.GetInfo(), info)
			}
			if st.Code() == codes.PermissionDenied {
				refused++
			}
		}
		if user == "carol" && refused == 0 {
			t.Errorf("carol was refused nothing: the table checks no permission")
		}
	}
}

// CreateFiles and CompleteFiles create and seal each file as CreateFile
// and CompleteFile would, each on its own: one refused or failing file
// leaves the others done.
func TestCreateAndCompleteFilesEachOnItsOwn(t *testing.T) {
	ns := newPermNS(t, true)
	alice := as("alice")
	cresp, err := ns.CreateFiles(alice, &api.CreateFilesRequest{Files: []*api.CreateFileRequest{
		{Path: "/tmpw/a"}, {Path: "/home/bob/g"}, {Path: "/pub/new"}, {Path: "/tmpw/a"}, {Path: "/tmpw/b"}, {Path: "/tmpw/x/priv/c"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantCreate := []codes.Code{codes.OK, codes.PermissionDenied, codes.PermissionDenied, codes.AlreadyExists, codes.OK, codes.PermissionDenied}
	for i, r := range cresp.GetResults() {
		if codes.Code(r.GetCode()) != wantCreate[i] {
			t.Errorf("create %d: %s %q, want %s", i, codes.Code(r.GetCode()), r.GetError(), wantCreate[i])
		}
	}
	a, b := cresp.GetResults()[0].GetInfo(), cresp.GetResults()[4].GetInfo()
	if a.GetOwner() != "alice" || a.GetCompleted() {
		t.Fatalf("/tmpw/a: %+v", a)
	}
	dresp, err := ns.CompleteFiles(alice, &api.CompleteFilesRequest{Files: []*api.CompleteFileRequest{
		{Path: "/tmpw/a", Length: 5, FileId: a.GetFileId()}, {Path: "/proj/w", Length: 1}, {Path: "/home/bob/f", Length: 1},
		{Path: "/tmpw/b", Length: 7, FileId: b.GetFileId() + 1000}, {Path: "/tmpw/b", Length: -1}, {Path: "bad"}, {Path: "/tmpw/b", Length: 7, FileId: b.GetFileId()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantComplete := []codes.Code{codes.OK, codes.FailedPrecondition, codes.PermissionDenied, codes.FailedPrecondition, codes.InvalidArgument, codes.InvalidArgument, codes.OK}
	for i, r := range dresp.GetResults() {
		if codes.Code(r.GetCode()) != wantComplete[i] {
			t.Errorf("complete %d: %s %q, want %s", i, codes.Code(r.GetCode()), r.GetError(), wantComplete[i])
		}
	}
	for p, n := range map[string]int64{"/tmpw/a": 5, "/tmpw/b": 7} {
		fi, err := ns.GetStatus(alice, &api.GetStatusRequest{Path: p})
		if err != nil || !fi.GetCompleted() || fi.GetLength() != n {
			t.Errorf("%s after the batch: %+v, %v; want complete with %d bytes", p, fi, err, n)
		}
	}
	if err := ns.st.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// A master that does not lead refuses a whole batch (so the client layer
// sends it again to the leader, as it does a single call), changing
// nothing.
func TestBatchesRefusedWholeByAStandby(t *testing.T) {
	ns := newPermNS(t, true)
	ns.mu.Lock()
	ns.standby = errStandby
	ns.mu.Unlock()
	ctx := context.Background()
	if _, err := ns.GetStatuses(ctx, &api.GetStatusesRequest{Requests: []*api.GetStatusRequest{{Path: "/pub/f"}, {Path: "/nope"}}}); status.Code(err) != codes.Unavailable {
		t.Errorf("GetStatuses on a standby: %v, want Unavailable for the whole call", err)
	}
	if _, err := ns.CreateFiles(ctx, &api.CreateFilesRequest{Files: []*api.CreateFileRequest{{Path: "/tmpw/s"}}}); status.Code(err) != codes.Unavailable {
		t.Errorf("CreateFiles on a standby: %v, want Unavailable for the whole call", err)
	}
	if _, err := ns.CompleteFiles(ctx, &api.CompleteFilesRequest{Files: []*api.CompleteFileRequest{{Path: "/pub/f"}}}); status.Code(err) != codes.Unavailable {
		t.Errorf("CompleteFiles on a standby: %v, want Unavailable for the whole call", err)
	}
	ns.mu.Lock()
	ns.standby = nil
	ns.mu.Unlock()
	if _, err := ns.GetStatus(ctx, &api.GetStatusRequest{Path: "/tmpw/s"}); status.Code(err) != codes.NotFound {
		t.Errorf("/tmpw/s after a refused CreateFiles: %v, want NotFound", err)
	}
}

// waitCounter is a memJournal that counts the waits for its entries.
type waitCounter struct {
	memJournal
	waits atomic.Int64
}

type countedWaiter struct{ c *waitCounter }

func (w countedWaiter) Wait(context.Context) error { w.c.waits.Add(1); return nil }

func (c *waitCounter) Append(e *api.JournalEntry) waiter {
	c.memJournal.Append(e)
	return countedWaiter{c}
}

// A batch of stats of files the namespace has not learned yet learns them
// all from the UFS and waits for the journal once, not once per file; its
// answers are those of single stats (a missing file NotFound, the others
// learned with their UFS length).
func TestGetStatusesLearnsItsPathsAndWaitsOnce(t *testing.T) {
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	if err := os.MkdirAll(filepath.Join(ufsDir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	j := &waitCounter{}
	ns := newNamespace(NewState(), j, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)
	var reqs []*api.GetStatusRequest
	for i := range 5 {
		name := filepath.Join(ufsDir, "d", fmt.Sprintf("f%d", i))
		if err := os.WriteFile(name, make([]byte, 100+i), 0o644); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, &api.GetStatusRequest{Path: fmt.Sprintf("/d/f%d", i)})
	}
	reqs = append(reqs, &api.GetStatusRequest{Path: "/d/missing"})
	before := j.waits.Load()
	resp, err := ns.GetStatuses(context.Background(), &api.GetStatusesRequest{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.waits.Load() - before; got != 1 {
		t.Errorf("the batch waited for the journal %d times, want once", got)
	}
	for i, r := range resp.GetResults() {
		if i == 5 {
			if codes.Code(r.GetCode()) != codes.NotFound {
				t.Errorf("/d/missing: %s %q, want NotFound", codes.Code(r.GetCode()), r.GetError())
			}
			continue
		}
		if r.GetCode() != 0 || r.GetInfo().GetLength() != int64(100+i) || r.GetInfo().GetPath() != reqs[i].Path {
			t.Errorf("%s: %+v", reqs[i].Path, r)
		}
	}
	check(t, ns)
	// Learned: a second batch finds them all and waits for nothing.
	before = j.waits.Load()
	if _, err := ns.GetStatuses(context.Background(), &api.GetStatusesRequest{Requests: reqs[:5]}); err != nil {
		t.Fatal(err)
	}
	if got := j.waits.Load() - before; got != 0 {
		t.Errorf("a batch of known paths waited for the journal %d times", got)
	}
}

// A batch learns from the UFS what its paths need that the namespace has
// not loaded yet, as each of its single creates would: a name the UFS has
// is taken (and known after), a directory the UFS has is one to create in.
func TestCreateFilesLearnTheirPaths(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	ctx := context.Background()
	for _, f := range []struct {
		p    string
		size int
	}{{"d1/there", 1}, {"d2/sib", 2}} {
		if err := os.MkdirAll(filepath.Join(ufsDir, filepath.Dir(f.p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ufsDir, f.p), make([]byte, f.size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := ns.CreateFiles(ctx, &api.CreateFilesRequest{Files: []*api.CreateFileRequest{
		{Path: "/d1/there"}, {Path: "/d2/new"}, {Path: "/d1/new"}, {Path: "/d3/x"}, {Path: "/d3/x", Recursive: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.AlreadyExists, codes.OK, codes.OK, codes.NotFound, codes.OK}
	for i, r := range resp.GetResults() {
		if codes.Code(r.GetCode()) != want[i] {
			t.Errorf("create %d: %s %q, want %s", i, codes.Code(r.GetCode()), r.GetError(), want[i])
		}
	}
	fi, err := ns.GetStatus(ctx, &api.GetStatusRequest{Path: "/d1/there", LoadMetadataType: api.LoadMetadataType_NEVER})
	if err != nil || fi.GetLength() != 1 || !fi.GetCompleted() {
		t.Errorf("/d1/there after the batch: %+v, %v; want it learned, 1 byte", fi, err)
	}
	if err := ns.st.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}
