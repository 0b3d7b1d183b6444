package jobmaster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/rpc"
)

// applyAll applies commands to f as consecutive raft entries after from.
// A command the FSM refuses by panicking is the caller's to catch.
func applyAll(f *FSM, from uint64, cmds []proto.Message) uint64 {
	for _, m := range cmds {
		buf, err := encodeCommand(m)
		if err != nil {
			panic(err)
		}
		from++
		f.Apply(&raft.Log{Index: from, Term: 1, Type: raft.LogCommand, Data: buf})
	}
	return from
}

// snapshotBytes writes f's snapshot as raft's file store would hold it.
func snapshotBytes(f *FSM) ([]byte, error) {
	snap, err := f.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		return nil, err
	}
	return sink.Bytes(), nil
}

// busyCommands build a state with jobs, tasks in every status, workers and
// a policy, without a *testing.T.
func busyCommands() []proto.Message {
	return []proto.Message{
		&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: "ra", NowMs: 1000},
		&api.PlanTasksCommand{JobId: 1, FirstTaskId: 1, Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/a/1", BytesTotal: 5}, {Args: []byte("{}"), Description: "/a/2"}, {Args: []byte("{}"), Description: "/a/3"}}, Cursor: []byte("c3"), NowMs: 2000},
		&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/b"}`, RequestId: "rb", NowMs: 1000},
		&api.PlanTasksCommand{JobId: 2, FirstTaskId: 1, Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/b/1"}}, PlanningDone: true, NowMs: 2000},
		&api.RegisterWorkerCommand{Address: "w:1", Host: "h", Threads: 4, MaxAttempts: 2, NowMs: 3000},
		&api.RegisterWorkerCommand{Address: "w:2", Host: "h", Threads: 4, MaxAttempts: 2, NowMs: 3000},
		&api.UpdateTasksCommand{Transitions: []*api.TaskTransition{
			{JobId: 1, TaskId: 1, Attempt: 1, Kind: api.TaskTransition_DISPATCH, WorkerId: 1},
			{JobId: 1, TaskId: 2, Attempt: 1, Kind: api.TaskTransition_COMPLETE},
			{JobId: 1, TaskId: 3, Attempt: 1, Kind: api.TaskTransition_FAIL, Error: "boom"},
		}, MaxAttempts: 2, NowMs: 4000},
		&api.CancelJobCommand{JobId: 2},
		&api.PutPolicyCommand{Policy: &api.PolicyInfo{Name: "p", Cron: "@hourly", Plan: "load", ConfigJson: "{}", Enabled: true, LastJobId: 1}},
		&api.SetPeerCommand{Id: "jm4", RaftAddress: "h4:20003", RpcAddress: "h4:20001"},
		&api.SubmitPlannedJobCommand{
			Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/c"}`, RequestId: "rc", NowMs: 5000},
			Plan:   &api.PlanTasksCommand{Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/c/1", BytesTotal: 7}}, PlanningDone: true},
		},
		&api.SubmitJobsCommand{Jobs: []*api.SubmitPlannedJobCommand{
			{Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/d"}`, RequestId: "rd", NowMs: 6000},
				Plan: &api.PlanTasksCommand{Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/d/1"}}, PlanningDone: true}},
			{Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/e"}`, RequestId: "re", NowMs: 6001}},
		}},
	}
}

// FuzzReadSnapshot: a raft snapshot comes from disk (CRC-checked by raft)
// or from the leader. The reader must never panic on any bytes; what it
// accepts restores into an FSM whose own snapshot reads back to the same
// state, and that FSM goes on applying commands without panicking.
func FuzzReadSnapshot(f *testing.F) {
	fsm := NewFSM(nil)
	applyAll(fsm, 0, busyCommands())
	b, err := snapshotBytes(fsm)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	empty, err := snapshotBytes(NewFSM(nil))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(empty)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := readSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		g := NewFSM(nil)
		if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			t.Fatalf("readSnapshot accepted what Restore refuses: %v", err)
		}
		_ = st
		again, err := snapshotBytes(g)
		if err != nil {
			t.Fatal(err)
		}
		h := NewFSM(nil)
		if err := h.Restore(io.NopCloser(bytes.NewReader(again))); err != nil {
			t.Fatalf("a snapshot of a restored state does not restore: %v", err)
		}
		if dump(g) != dump(h) {
			t.Fatalf("snapshot round trip changed the state:\n%s\n---\n%s", dump(g), dump(h))
		}
		applyAll(h, h.AppliedIndex()+1, append(commandSeeds(), busyCommands()...))
	})
}

// FuzzHTTPJobs drives the job master's JSON API with arbitrary query
// strings and job ids: GET /api/v1/jobs?... and /api/v1/jobs/{id}?...
// Every answer is JSON with a 200, 400 or 404, and a listing never holds
// more than the largest page.
func FuzzHTTPJobs(f *testing.F) {
	cfg := testConfigFor(f)
	cfg.JobMaster.Raft.NodeID = "n0"
	_, tr := raft.NewInmemTransport("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	store := raft.NewInmemStore()
	s, err := newServer(cfg, zap.NewNop(), serverOptions{
		parts: &raftgroup.Parts{Logs: store, Stable: store, Snaps: raft.NewInmemSnapshotStore(), Trans: tr},
		env:   nopEnv{}, rpcLn: ln, noHTTP: true,
		peers: []Peer{{ID: "n0", RaftAddr: string(tr.LocalAddr()), RPCAddr: ln.Addr().String()}},
	})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	cc, err := rpc.Dial(ln.Addr().String(), rpc.ClientOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	cl := api.NewJobMasterClient(cc)
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 5; {
		if time.Now().After(deadline) {
			f.Fatal("could not submit the seed jobs")
		}
		if _, err := cl.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: "test", ConfigJson: fmt.Sprintf(`{"tasks":%d}`, n)}); err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		n++
	}
	for _, seed := range [][2]string{
		{"", ""}, {"", "status=RUNNING,FAILED&plan=load&pageSize=2"}, {"", "pageSize=abc"}, {"", "status=BOGUS"},
		{"", "pageSize=-5&pageToken=%ff%00"}, {"", "pageToken=3&pageSize=1000000"}, {"1", "verbose=true"},
		{"99", ""}, {"abc", ""}, {"-1", "verbose=maybe"}, {"9223372036854775807", ""}, {"1/2", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, id, query string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/jobs", nil)
		r.URL.RawQuery = query
		w := httptest.NewRecorder()
		if id == "" {
			s.httpListJobs(w, r)
		} else {
			r.URL.Path = "/api/v1/jobs/" + id
			s.httpGetJob(w, r)
		}
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("id %q query %q: status %d: %s", id, query, w.Code, w.Body)
		}
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("id %q query %q: not JSON (%v): %s", id, query, err, w.Body)
		}
		if jobs, ok := body["jobs"].([]any); ok && len(jobs) > maxPageSize {
			t.Fatalf("query %q: %d jobs in one page", query, len(jobs))
		}
	})
}
