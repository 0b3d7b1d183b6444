// Package rpc builds the gRPC servers and client connections every role
// uses, so that authentication, panic recovery, message limits and keepalive
// are the same everywhere.
package rpc

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// MaxMessageSize bounds one gRPC message; data moves in chunks well below it.
const MaxMessageSize = 16 << 20

// ServerOptions configures NewServer.
type ServerOptions struct {
	// Token, when set, is required in every call's "authorization: Bearer"
	// metadata.
	Token  string
	TLS    *tls.Config
	Logger *zap.Logger
	// MaxRecvMsgSize defaults to MaxMessageSize.
	MaxRecvMsgSize int
}

// NewServer returns a gRPC server with the shared interceptors.
func NewServer(o ServerOptions) *grpc.Server {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	maxRecv := o.MaxRecvMsgSize
	if maxRecv == 0 {
		maxRecv = MaxMessageSize
	}
	g := guard{token: o.Token, log: log}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.ChainUnaryInterceptor(g.unary),
		grpc.ChainStreamInterceptor(g.stream),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Big windows keep a single block stream from stalling on flow control.
		grpc.InitialWindowSize(8 << 20),
		grpc.InitialConnWindowSize(32 << 20),
		grpc.ReadBufferSize(1 << 20),
		grpc.WriteBufferSize(1 << 20),
		grpc.ForceServerCodecV2(codec), // block chunks without copies (codec.go)
		experimental.BufferPool(transportPool),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	return grpc.NewServer(opts...)
}

type guard struct {
	token string
	log   *zap.Logger
}

func (g guard) check(ctx context.Context, method string) error {
	if g.token == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var got string
	if v := md.Get("authorization"); len(v) > 0 {
		got = strings.TrimPrefix(v[0], "Bearer ")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(g.token)) == 1 {
		return nil
	}
	who := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		who = p.Addr.String()
	}
	reason := "wrong token"
	if got == "" {
		reason = "no token"
	}
	g.log.Warn("unauthenticated call refused", zap.String("peer", who), zap.String("method", method), zap.String("reason", reason))
	return status.Errorf(codes.Unauthenticated, "%s: %s (set ALLUVIUM_TOKEN or --token)", method, reason)
}

func (g guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	if err := g.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	defer g.recover(info.FullMethod, &err)
	return h(ctx, req)
}

func (g guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	if err := g.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	defer g.recover(info.FullMethod, &err)
	return h(srv, ss)
}

// recover turns a handler panic into an Internal error so one bad request
// cannot take the process down.
func (g guard) recover(method string, err *error) {
	if r := recover(); r != nil {
		g.log.Error("panic in rpc handler", zap.String("method", method), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		*err = status.Errorf(codes.Internal, "%s: internal error: %v", method, r)
	}
}

// ClientOptions configures Dial.
type ClientOptions struct {
	Token string
	TLS   *tls.Config
}

type tokenCreds struct {
	token  string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}
func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// Dial returns a lazily connecting client connection to addr (host:port,
// or unix:/path for a unix socket).
func Dial(addr string, o ClientOptions) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("dial: empty address")
	}
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize), grpc.ForceCodecV2(codec)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithInitialWindowSize(8 << 20),
		grpc.WithInitialConnWindowSize(32 << 20),
		grpc.WithReadBufferSize(1 << 20),
		grpc.WithWriteBufferSize(1 << 20),
		experimental.WithBufferPool(transportPool),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(o.TLS)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{token: o.Token, secure: o.TLS != nil}))
	}
	target := "passthrough:///" + addr
	if strings.HasPrefix(addr, "unix:") {
		target = addr // unix:/path/to.sock
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// Listen opens a TCP listener on host:port and names the address in its error.
func Listen(host string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(host, fmt.Sprint(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}
