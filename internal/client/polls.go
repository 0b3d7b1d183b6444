package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// Polls is a job worker's heartbeats (long polls and result reports) to
// the leading job master over one long-lived JobWorkerPolls stream instead
// of a unary JobWorkerHeartbeat each: the stream is opened once per leader,
// so a poll costs a message each way, not a call's setup (headers, a
// server handler goroutine, contexts) on both sides. A master that lacks
// the stream (UNIMPLEMENTED) is polled with the unary call from then on.
// Not safe for concurrent use: one poll at a time, as the stream carries
// one request and its answer at a time.
type Polls struct {
	addr   string // the master the stream goes to
	stream api.JobMaster_JobWorkerPollsClient
	cancel context.CancelFunc
	// timer cancels the stream when a poll's answer is late; one per
	// stream, re-armed for each poll (no timer or context per poll).
	timer *time.Timer
	// unary: masters that answered UNIMPLEMENTED (older ones).
	unary map[string]bool
}

// Poll sends req to the job master at addr (c is its client) and returns
// its answer, or an error once timeout passed without one
// (DeadlineExceeded, as the unary call's deadline gives). Any error drops
// the stream; the next poll opens a new one. A different addr than the
// last poll's (the leader moved) closes the old stream first.
func (p *Polls) Poll(ctx context.Context, c api.JobMasterClient, addr string, req *api.JobWorkerHeartbeatRequest, timeout time.Duration) (*api.JobWorkerHeartbeatResponse, error) {
	if addr != p.addr {
		p.Close()
		p.addr = addr
	}
	if p.unary[addr] {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return c.JobWorkerHeartbeat(cctx, req)
	}
	if p.stream == nil {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := c.JobWorkerPolls(sctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("job worker polls to %s: %w", addr, err)
		}
		p.stream, p.cancel = stream, cancel
		p.timer = time.AfterFunc(timeout, cancel)
	} else {
		p.timer.Reset(timeout)
	}
	resp, err := p.roundTrip(req)
	stopped := p.timer.Stop()
	if stopped && err == nil {
		return resp, nil
	}
	// The timer fired (it cancelled the stream) or the stream failed:
	// either way the stream is done.
	p.Close()
	switch {
	case err == nil:
		// The answer came as the timer fired: it is good.
		return resp, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case !stopped:
		return nil, status.Errorf(codes.DeadlineExceeded, "job worker polls to %s: no answer within %v", addr, timeout)
	case status.Code(err) == codes.Unimplemented:
		// An older master: the unary call from now on.
		if p.unary == nil {
			p.unary = map[string]bool{}
		}
		p.unary[addr] = true
		p.addr = addr
		return p.Poll(ctx, c, addr, req, timeout)
	}
	return nil, err
}

// roundTrip sends req on the stream and reads its answer.
func (p *Polls) roundTrip(req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	if err := p.stream.Send(req); err != nil {
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		// The stream ended: Recv has its status.
	}
	resp, err := p.stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, status.Error(codes.Unavailable, "job worker polls: the master ended the stream")
	}
	return resp, err
}

// Close ends the stream (the next poll opens another).
func (p *Polls) Close() {
	if p.stream == nil {
		return
	}
	p.timer.Stop()
	p.cancel()
	p.stream, p.cancel, p.timer = nil, nil, nil
}
