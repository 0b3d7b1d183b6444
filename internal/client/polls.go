package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// StreamCalls makes a worker's periodic calls (heartbeats, long polls) to
// a master over one long-lived bidirectional stream instead of a unary
// call each: the stream is opened once, so a call costs a message each
// way, not a call's setup (headers, a server handler goroutine, contexts)
// on both sides, which at 10,000 workers a second is most of both sides'
// CPU. The stream's server answers each request with one response, in
// order, as the unary call would. A master that lacks the stream
// (UNIMPLEMENTED) gets the unary call from then on.
// Not safe for concurrent use: one call at a time, as the stream carries
// one request and its answer at a time.
type StreamCalls[Req, Resp any] struct {
	stream grpc.BidiStreamingClient[Req, Resp]
	cancel context.CancelFunc
	// timer cancels the stream when an answer is late; one per stream,
	// re-armed for each call (no timer or context per call).
	timer *time.Timer
	// Unary: the master answered UNIMPLEMENTED (an older one).
	Unary bool
}

// Call sends req on the stream (opened with open when there is none) and
// returns its answer, or an error once timeout passed without one
// (DeadlineExceeded, as a unary call's deadline gives). Any error drops
// the stream; the next call opens a new one. With Unary set (or once the
// master answers UNIMPLEMENTED) it calls unary instead.
func (s *StreamCalls[Req, Resp]) Call(ctx context.Context, req *Req, timeout time.Duration,
	open func(context.Context) (grpc.BidiStreamingClient[Req, Resp], error),
	unary func(context.Context, *Req) (*Resp, error)) (*Resp, error) {
	if s.Unary {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return unary(cctx, req)
	}
	if s.stream == nil {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := open(sctx)
		if err != nil {
			cancel()
			if status.Code(err) == codes.Unimplemented {
				s.Unary = true
				return s.Call(ctx, req, timeout, open, unary)
			}
			return nil, err
		}
		s.stream, s.cancel = stream, cancel
		s.timer = time.AfterFunc(timeout, cancel)
	} else {
		s.timer.Reset(timeout)
	}
	resp, err := s.roundTrip(req)
	stopped := s.timer.Stop()
	if stopped && err == nil {
		return resp, nil
	}
	// The timer fired (it cancelled the stream) or the stream failed:
	// either way the stream is done.
	s.Close()
	switch {
	case err == nil:
		// The answer came as the timer fired: it is good.
		return resp, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case !stopped:
		return nil, status.Errorf(codes.DeadlineExceeded, "no answer within %v", timeout)
	case status.Code(err) == codes.Unimplemented:
		// An older master: the unary call from now on.
		s.Unary = true
		return s.Call(ctx, req, timeout, open, unary)
	}
	return nil, err
}

// roundTrip sends req on the stream and reads its answer.
func (s *StreamCalls[Req, Resp]) roundTrip(req *Req) (*Resp, error) {
	if err := s.stream.Send(req); err != nil {
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		// The stream ended: Recv has its status.
	}
	resp, err := s.stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, status.Error(codes.Unavailable, "the master ended the stream")
	}
	return resp, err
}

// Close ends the stream (the next call opens another).
func (s *StreamCalls[Req, Resp]) Close() {
	if s.stream == nil {
		return
	}
	s.timer.Stop()
	s.cancel()
	s.stream, s.cancel, s.timer = nil, nil, nil
}

// Polls is a job worker's heartbeats (long polls and result reports) to
// the leading job master over one JobWorkerPolls stream (StreamCalls)
// instead of a unary JobWorkerHeartbeat each, a new stream whenever the
// leader moves. Not safe for concurrent use.
type Polls struct {
	addr  string // the master the stream goes to
	calls StreamCalls[api.JobWorkerHeartbeatRequest, api.JobWorkerHeartbeatResponse]
	// unary: masters that answered UNIMPLEMENTED (older ones).
	unary map[string]bool
}

// Poll sends req to the job master at addr (c is its client) and returns
// its answer, or an error once timeout passed without one
// (DeadlineExceeded). A different addr than the last poll's (the leader
// moved) closes the old stream first.
func (p *Polls) Poll(ctx context.Context, c api.JobMasterClient, addr string, req *api.JobWorkerHeartbeatRequest, timeout time.Duration) (*api.JobWorkerHeartbeatResponse, error) {
	if addr != p.addr {
		p.calls.Close()
		p.addr = addr
		p.calls.Unary = p.unary[addr]
	}
	resp, err := p.calls.Call(ctx, req, timeout,
		func(ctx context.Context) (grpc.BidiStreamingClient[api.JobWorkerHeartbeatRequest, api.JobWorkerHeartbeatResponse], error) {
			return c.JobWorkerPolls(ctx)
		},
		func(ctx context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
			return c.JobWorkerHeartbeat(ctx, req)
		})
	if p.calls.Unary && !p.unary[addr] {
		if p.unary == nil {
			p.unary = map[string]bool{}
		}
		p.unary[addr] = true
	}
	if err != nil {
		return nil, fmt.Errorf("job worker poll to %s: %w", addr, err)
	}
	return resp, nil
}

// Close ends the stream.
func (p *Polls) Close() { p.calls.Close() }

// Heartbeats is a block worker's heartbeats to the leading FS master over
// one WorkerHeartbeats stream (StreamCalls) instead of a unary
// WorkerHeartbeat each. bm is the client layer's (FSMaster.BlockMaster):
// the stream opens on the leader, and when the leader moves the old one
// ends it and the next beat opens one on the new leader. Not safe for
// concurrent use.
type Heartbeats struct {
	calls StreamCalls[api.WorkerHeartbeatRequest, api.WorkerHeartbeatResponse]
}

// Beat sends one heartbeat and returns its answer, or an error once
// timeout passed without one (DeadlineExceeded).
func (h *Heartbeats) Beat(ctx context.Context, bm api.BlockMasterClient, req *api.WorkerHeartbeatRequest, timeout time.Duration) (*api.WorkerHeartbeatResponse, error) {
	return h.calls.Call(ctx, req, timeout,
		func(ctx context.Context) (grpc.BidiStreamingClient[api.WorkerHeartbeatRequest, api.WorkerHeartbeatResponse], error) {
			return bm.WorkerHeartbeats(ctx)
		},
		func(ctx context.Context, req *api.WorkerHeartbeatRequest) (*api.WorkerHeartbeatResponse, error) {
			return bm.WorkerHeartbeat(ctx, req)
		})
}

// Close ends the stream.
func (h *Heartbeats) Close() { h.calls.Close() }
