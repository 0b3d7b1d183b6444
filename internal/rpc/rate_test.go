package rpc

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/alluvium/alluvium/api"
)

// rateEcho answers GetStatus (unary) and ReadBlock (a stream) with the
// budget the call draws from, as RateOf reads it.
type rateEcho struct {
	api.UnimplementedFileSystemMasterServer
	api.UnimplementedBlockWorkerServer
}

func rateOf(ctx context.Context) string {
	key, bps, ok := RateOf(ctx)
	if !ok {
		return "none"
	}
	return fmt.Sprintf("%s=%d", key, bps)
}

func (rateEcho) GetStatus(ctx context.Context, r *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	return &api.GetStatusResponse{Info: &api.FileInfo{Path: rateOf(ctx)}}, nil
}

func (rateEcho) ReadBlock(r *api.ReadBlockRequest, s grpc.ServerStreamingServer[api.ReadBlockResponse]) error {
	return s.Send(&api.ReadBlockResponse{Chunk: []byte(rateOf(s.Context()))})
}

// A task's calls carry its job's bandwidth share as it is at each call,
// on unary calls and streams; a call without WithRate, or at a share of 0,
// carries none; a user (not the cluster) cannot name a budget, even with
// the header set by hand.
func TestRateHeader(t *testing.T) {
	s := NewServer(ServerOptions{Token: clusterToken, Superuser: "root", Users: map[string]string{"alice": aliceToken}})
	api.RegisterFileSystemMasterServer(s, rateEcho{})
	api.RegisterBlockWorkerServer(s, rateEcho{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l) //nolint:errcheck
	t.Cleanup(s.Stop)
	dial := func(token string) *grpc.ClientConn {
		cc, err := Dial(l.Addr().String(), ClientOptions{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	sys, user := dial(clusterToken), dial(aliceToken)
	unary := func(cc *grpc.ClientConn, ctx context.Context) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := api.NewFileSystemMasterClient(cc).GetStatus(ctx, &api.GetStatusRequest{Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetInfo().GetPath()
	}
	stream := func(cc *grpc.ClientConn, ctx context.Context) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := api.NewBlockWorkerClient(cc).ReadBlock(ctx, &api.ReadBlockRequest{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return string(m.GetChunk())
	}
	var share atomic.Int64
	share.Store(1000)
	ctx := WithRate(context.Background(), "job-7", share.Load)
	for _, c := range []struct {
		name string
		got  func() string
		want string
	}{
		{"no budget", func() string { return unary(sys, context.Background()) }, "none"},
		{"unary", func() string { return unary(sys, ctx) }, "job-7=1000"},
		{"stream", func() string { return stream(sys, ctx) }, "job-7=1000"},
		{"re-split", func() string { share.Store(500); return unary(sys, ctx) }, "job-7=500"},
		{"acting for a user", func() string { return unary(sys, ActAs(ctx, "bob")) }, "job-7=500"},
		{"without", func() string { return unary(sys, WithoutRate(ctx)) }, "none"},
		{"share 0", func() string { share.Store(0); return unary(sys, ctx) }, "none"},
		{"a user", func() string { share.Store(9); return unary(user, ctx) }, "none"},
		{"a user by hand", func() string {
			return unary(user, metadata.AppendToOutgoingContext(context.Background(), RateHeader, "job-7 1"))
		}, "none"},
		{"a bad header", func() string {
			return unary(sys, metadata.AppendToOutgoingContext(context.Background(), RateHeader, "job-7 x"))
		}, "none"},
	} {
		if got := c.got(); got != c.want {
			t.Errorf("%s: the server saw %q, want %q", c.name, got, c.want)
		}
	}
}
