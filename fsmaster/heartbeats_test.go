package fsmaster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// TestWorkerHeartbeatsStream: a block worker's heartbeats over one
// WorkerHeartbeats stream are answered as the unary call answers them and
// keep it LIVE past its TTL; silent (the stream still open), it is LOST
// after the TTL and the job master is told, as for a worker that stopped
// calling: liveness is the messages, not the open stream. A stopping
// master ends the stream UNAVAILABLE at the next heartbeat.
func TestWorkerHeartbeatsStream(t *testing.T) {
	jm := &lostJobMaster{}
	tm := startWithJobMaster(t, jm)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: "streamed", RpcPort: 7}}))
	stream, err := tm.blocks.WorkerHeartbeats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := reg.GetWorkerId()
	beat := func() *api.WorkerHeartbeatResponse {
		t.Helper()
		if err := stream.Send(&api.WorkerHeartbeatRequest{WorkerId: id}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Twice the TTL (1 s) on the stream's heartbeats alone.
	for until := time.Now().Add(2 * time.Second); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
		resp := beat()
		if resp.GetHeartbeatIntervalMs() != 100 || resp.GetTtlMs() != 1000 {
			t.Fatalf("heartbeat reply %v: want the interval 100 ms and the TTL 1000 ms", resp)
		}
		if len(resp.GetCommands()) != 0 {
			t.Fatalf("a live worker's heartbeat got %v", resp.GetCommands())
		}
	}
	jm.mu.Lock()
	told := len(jm.reqs)
	jm.mu.Unlock()
	if told != 0 {
		t.Fatalf("the job master was told a worker heartbeating over the stream is lost")
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		jm.mu.Lock()
		defer jm.mu.Unlock()
		if len(jm.reqs) == 0 {
			return fmt.Errorf("the job master was not told the silent worker is lost")
		}
		return nil
	})
	if cmds := beat().GetCommands(); len(cmds) != 1 || cmds[0].GetType() != api.WorkerCommand_REGISTER {
		t.Fatalf("heartbeat of a lost worker: %v, want REGISTER", cmds)
	}
	// A stream's answers share one message: once the worker has
	// registered again, its next answer on the same stream carries no
	// command left from that REGISTER.
	reg = must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: "streamed", RpcPort: 7}}))
	id = reg.GetWorkerId()
	if resp := beat(); len(resp.GetCommands()) != 0 || resp.GetTtlMs() != 1000 {
		t.Fatalf("the heartbeat after registering again got %v, want no command and the TTL 1000 ms", resp)
	}

	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- tm.Stop(sctx)
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		if !tm.stopping.Load() {
			return fmt.Errorf("not stopping yet")
		}
		return nil
	})
	if err := stream.Send(&api.WorkerHeartbeatRequest{WorkerId: reg.GetWorkerId()}); err == nil {
		if _, err = stream.Recv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("heartbeat to a stopping master: %v, want Unavailable", err)
		}
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop still waits for the heartbeat stream it ended")
	}
}

// A frozen worker (its heartbeat stream open, silent) does not hold Stop
// until the caller's deadline: Stop cuts the calls left after
// streamDrain.
func TestStopDoesNotWaitForSilentHeartbeatStream(t *testing.T) {
	tm := startWithJobMaster(t, &lostJobMaster{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: "frozen", RpcPort: 7}}))
	stream, err := tm.blocks.WorkerHeartbeats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&api.WorkerHeartbeatRequest{WorkerId: reg.GetWorkerId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// The worker freezes: the stream stays open and says nothing more.
	sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer scancel()
	start := time.Now()
	if err := tm.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if took, most := time.Since(start), tm.streamDrain()+5*time.Second; took > most {
		t.Fatalf("Stop took %s with a silent heartbeat stream open, want at most %s (streamDrain %s)", took, most, tm.streamDrain())
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatal("the frozen worker's stream is still open after Stop")
	}
}
