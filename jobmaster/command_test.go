package jobmaster

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// Every command type round-trips through the log encoding.
func TestCommandRoundTrip(t *testing.T) {
	for _, m := range commandSeeds() {
		buf, err := encodeCommand(m)
		if err != nil {
			t.Fatal(err)
		}
		typ, got, ign, err := decodeCommand(buf)
		if err != nil || ign != skippable(typ) {
			t.Fatalf("%T: %v (ignorable %v)", m, err, ign)
		}
		if want, _ := commandType(m); typ != want || !proto.Equal(got, m) {
			t.Fatalf("%T: decoded %v as %v", m, m, got)
		}
	}
	if _, err := encodeCommand(&api.JobInfo{}); err == nil {
		t.Fatal("a non-command encoded")
	}
	if _, _, _, err := decodeCommand([]byte{42}); !errors.Is(err, errUnknownCommand) {
		t.Fatalf("unknown type: %v", err)
	}
}

// Every command type of the log format has its body and apply function
// registered, and each body names its type.
func TestEveryCommandTypeIsRegistered(t *testing.T) {
	for v, name := range api.JobCommandType_name {
		typ := api.JobCommandType(v)
		if typ == api.JobCommandType_JOB_COMMAND_UNSPECIFIED {
			continue
		}
		c := commands[typ]
		if c == nil {
			t.Errorf("%s has no registered apply function", name)
			continue
		}
		if got, err := commandType(c.newBody()); err != nil || got != typ {
			t.Errorf("%s: its body %T is typed %s (%v)", name, c.newBody(), got, err)
		}
	}
	if len(commands) != len(api.JobCommandType_name)-1 {
		t.Errorf("%d commands registered, the format has %d", len(commands), len(api.JobCommandType_name)-1)
	}
}

func commandSeeds() []proto.Message {
	return []proto.Message{
		&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/"}`, RequestId: "r", NowMs: 1},
		&api.PlanTasksCommand{JobId: 1, FirstTaskId: 1, Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/a", BytesTotal: 5}}, Cursor: []byte(`{"after":"/a"}`), PlanningDone: true},
		&api.UpdateTasksCommand{Transitions: []*api.TaskTransition{{JobId: 1, TaskId: 1, Attempt: 1, Kind: api.TaskTransition_COMPLETE}}, MaxAttempts: 3},
		&api.CancelJobCommand{JobId: 1, Reason: "x"},
		&api.FinishJobCommand{JobId: 1, Status: api.JobInfo_COMPLETED},
		&api.NextRoundCommand{JobId: 1, Round: 1},
		&api.RegisterWorkerCommand{Address: "w:1", Threads: 4},
		&api.WorkerLostCommand{WorkerId: 1, MaxAttempts: 3},
		&api.DeleteJobsCommand{JobIds: []int64{1, 2}},
		&api.PutPolicyCommand{Policy: &api.PolicyInfo{Name: "p"}},
		&api.DeletePolicyCommand{Name: "p"},
		&api.SetPeerCommand{Id: "jm4", RaftAddress: "h4:20003", RpcAddress: "h4:20001"},
	}
}

// FuzzDecodeCommand: the raft command decoder never panics, and whatever
// it accepts re-encodes to an equal command. Applying what it accepts to an
// FSM never panics either (bad references are stale commands, not crashes).
func FuzzDecodeCommand(f *testing.F) {
	for _, m := range commandSeeds() {
		buf, _ := encodeCommand(m)
		f.Add(buf)
	}
	f.Add([]byte{})
	f.Add([]byte{0x80 | 77, 1, 2, 3})
	f.Add([]byte{byte(api.JobCommandType_UPDATE_TASKS), 0x0a, 0xff})
	f.Fuzz(func(t *testing.T, buf []byte) {
		typ, m, _, err := decodeCommand(buf)
		if err != nil {
			return
		}
		again, err := encodeCommand(m)
		if err != nil {
			t.Fatalf("decoded %s but cannot encode it: %v", typ, err)
		}
		_, m2, _, err := decodeCommand(again)
		if err != nil || !proto.Equal(m, m2) {
			t.Fatalf("round trip of %s: %v", typ, err)
		}
		ft := newFSMT(t)
		ft.submit("seed")
		ft.plan(1, 3, false)
		ft.register("w:1")
		ft.apply(m)
	})
}
