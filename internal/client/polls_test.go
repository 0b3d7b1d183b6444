package client

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// pollMaster answers job worker heartbeats: over the stream unless
// noStream (an older master: UNIMPLEMENTED), and not at all while hang.
type pollMaster struct {
	api.UnimplementedJobMasterServer
	noStream       bool
	hang           atomic.Bool
	streams, unary atomic.Int32
}

func (m *pollMaster) JobWorkerHeartbeat(ctx context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	m.unary.Add(1)
	return &api.JobWorkerHeartbeatResponse{TtlMs: req.GetWorkerId()}, nil
}

func (m *pollMaster) JobWorkerPolls(stream api.JobMaster_JobWorkerPollsServer) error {
	if m.noStream {
		return status.Error(codes.Unimplemented, "method JobWorkerPolls not implemented")
	}
	m.streams.Add(1)
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if m.hang.Load() {
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		if err := stream.Send(&api.JobWorkerHeartbeatResponse{TtlMs: req.GetWorkerId()}); err != nil {
			return err
		}
	}
}

func startPollMaster(t *testing.T, m *pollMaster) (api.JobMasterClient, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerOptions{})
	api.RegisterJobMasterServer(srv, m)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := rpc.Dial(ln.Addr().String(), rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewJobMasterClient(cc), ln.Addr().String()
}

// Polls carries every poll over one stream, each answered in order; an
// answer later than the timeout fails the poll DeadlineExceeded and the
// next poll opens a new stream.
func TestPollsOneStream(t *testing.T) {
	m := &pollMaster{}
	c, addr := startPollMaster(t, m)
	var p Polls
	defer p.Close()
	ctx := context.Background()
	for i := int64(1); i <= 5; i++ {
		resp, err := p.Poll(ctx, c, addr, &api.JobWorkerHeartbeatRequest{WorkerId: i}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTtlMs() != i {
			t.Fatalf("poll %d answered %v", i, resp)
		}
	}
	if n, u := m.streams.Load(), m.unary.Load(); n != 1 || u != 0 {
		t.Fatalf("5 polls took %d streams and %d unary calls, want 1 and 0", n, u)
	}
	m.hang.Store(true)
	start := time.Now()
	_, err := p.Poll(ctx, c, addr, &api.JobWorkerHeartbeatRequest{WorkerId: 6}, 200*time.Millisecond)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a poll the master does not answer: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a poll with a 200ms timeout took %v", took)
	}
	m.hang.Store(false)
	resp, err := p.Poll(ctx, c, addr, &api.JobWorkerHeartbeatRequest{WorkerId: 7}, 5*time.Second)
	if err != nil || resp.GetTtlMs() != 7 {
		t.Fatalf("poll after a late one: %v, %v", resp, err)
	}
	if n := m.streams.Load(); n != 2 {
		t.Fatalf("streams %d, want a second after the late poll", n)
	}
}

// A master without the stream (UNIMPLEMENTED) is polled with the unary
// call, from the first poll on.
func TestPollsFallBackToUnary(t *testing.T) {
	m := &pollMaster{noStream: true}
	c, addr := startPollMaster(t, m)
	var p Polls
	defer p.Close()
	for i := int64(1); i <= 3; i++ {
		resp, err := p.Poll(context.Background(), c, addr, &api.JobWorkerHeartbeatRequest{WorkerId: i}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTtlMs() != i {
			t.Fatalf("poll %d answered %v", i, resp)
		}
	}
	if n, u := m.unary.Load(), m.streams.Load(); n != 3 || u != 0 {
		t.Fatalf("unary calls %d, streams served %d: want 3 and 0", n, u)
	}
}
