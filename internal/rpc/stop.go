package rpc

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// StopServer stops srv gracefully: it waits for the calls in flight to
// finish, but no longer than ctx allows or, when most > 0, than most;
// then it cuts the ones left (Stop). It returns once srv is stopped.
// A bound matters for servers of long-lived streams (heartbeats, long
// polls): a peer that froze with one open would otherwise hold the stop
// until ctx ends.
func StopServer(ctx context.Context, srv *grpc.Server, most time.Duration) {
	if most > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, most)
		defer cancel()
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	srv.Stop()
	<-done
}
