package rpc

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A stream left open (a health Watch never ends by itself) holds
// GracefulStop; StopServer cuts it after its bound, and stops at once
// when nothing is in flight.
func TestStopServerBoundsAnOpenStream(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	w, err := healthpb.NewHealthClient(cc).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil { // the stream is open on the server
		t.Fatal(err)
	}
	start := time.Now()
	StopServer(context.Background(), srv, 300*time.Millisecond)
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("StopServer with an open stream took %s, want its bound (300ms)", took)
	}
	if _, err := w.Recv(); err == nil {
		t.Fatal("the stream is still open after StopServer")
	}

	idle := grpc.NewServer()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = idle.Serve(l2) }()
	start = time.Now()
	StopServer(context.Background(), idle, time.Hour)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("StopServer of an idle server took %s", took)
	}
}
