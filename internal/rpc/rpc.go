// Package rpc builds the gRPC servers and client connections every role
// uses, so that authentication, panic recovery, message limits and keepalive
// are the same everywhere.
package rpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
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

// MasterConnBuffer is the per-connection buffer of the masters' servers,
// which every worker keeps a connection to (ServerOptions.ConnBuffer).
const MasterConnBuffer = 64 << 10

// ServerOptions configures NewServer (and NewHTTPServerWith).
type ServerOptions struct {
	// Token, when set, is the cluster token: a call bearing it in its
	// "authorization: Bearer" metadata is the system identity.
	Token string
	// Users maps user names to their tokens (security.users).
	Users map[string]string
	// Superuser is the user name of the system identity (default
	// DefaultSuperuser). A client certificate with this CN is the system too.
	Superuser string
	// TLS serves TLS; with ClientCAs set, gRPC calls need a client
	// certificate signed by them, whose CN is the caller's user.
	TLS    *tls.Config
	Logger *zap.Logger
	// MaxRecvMsgSize defaults to MaxMessageSize. A bigger request is
	// refused with ResourceExhausted.
	MaxRecvMsgSize int
	// SystemOnly lists the full method names (/pkg.Service/Method) or
	// service prefixes (/pkg.Service/) only the cluster's own processes may
	// call: the system identity, for itself or on behalf of a user.
	SystemOnly []string
	// Unary and Stream run after authentication (the call's Identity is in
	// their context), in order, before the handler.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// ConnBuffer, when positive, is each connection's read and write
	// buffer, and write buffers are shared between connections while idle.
	// Servers of many clients set it (masters: 64 KiB): by default each
	// connection holds 2 MiB for fast block streams, which 10,000 workers'
	// connections would turn into 20 GiB.
	ConnBuffer int
	// ArrivalTimes lists the full method names whose calls carry the
	// instant the server read their headers (Arrived): the calls whose
	// server-side latency a role measures, queueing included.
	ArrivalTimes []string
}

// NewServer returns a gRPC server with the shared interceptors:
// authentication (the call's Identity is in its context), panic recovery
// and message limits. Without a token, users and client CA every caller is
// the system identity.
func NewServer(o ServerOptions) *grpc.Server {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	maxRecv := o.MaxRecvMsgSize
	if maxRecv <= 0 {
		maxRecv = MaxMessageSize
	}
	g := guard{auth: newAuthenticator(o, log), log: log, systemOnly: o.SystemOnly}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{g.unary}, o.Unary...)...),
		grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{g.stream}, o.Stream...)...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Big windows keep a single block stream from stalling on flow control.
		grpc.InitialWindowSize(8 << 20),
		grpc.InitialConnWindowSize(32 << 20),
		grpc.ForceServerCodecV2(codec), // block chunks without copies (codec.go)
		experimental.BufferPool(transportPool),
		// Calls run on long-lived goroutines whose stacks have grown, not
		// one new goroutine each growing its stack again (a tenth of a
		// small call's CPU); when all are busy (long polls), a call gets
		// its own goroutine as before.
		grpc.NumStreamWorkers(uint32(max(32, 8*runtime.GOMAXPROCS(0)))),
	}
	if len(o.ArrivalTimes) > 0 {
		opts = append(opts, grpc.InTapHandle(arrivalTap(o.ArrivalTimes)))
	}
	if o.ConnBuffer > 0 {
		opts = append(opts, grpc.ReadBufferSize(o.ConnBuffer), grpc.WriteBufferSize(o.ConnBuffer), grpc.SharedWriteBuffer(true))
	} else {
		opts = append(opts, grpc.ReadBufferSize(1<<20), grpc.WriteBufferSize(1<<20))
	}
	if o.TLS != nil {
		t := o.TLS.Clone()
		if t.ClientCAs != nil && t.ClientAuth == tls.NoClientCert {
			t.ClientAuth = tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(t)))
	}
	return grpc.NewServer(opts...)
}

type guard struct {
	auth       *authenticator
	log        *zap.Logger
	systemOnly []string
}

// check authenticates a call and returns its context carrying the Identity.
func (g guard) check(ctx context.Context, method string) (context.Context, error) {
	id, err := g.auth.grpcIdentity(ctx, method)
	if err != nil {
		return nil, err
	}
	if !id.Trusted() && g.restricted(method) {
		who := "unknown"
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			who = p.Addr.String()
		}
		g.log.Warn("call refused", zap.String("peer", who), zap.String("method", method), zap.String("user", id.User), zap.String("reason", "system only"))
		return nil, status.Errorf(codes.PermissionDenied, "%s: user %s: only the cluster's own processes may call this", method, id.User)
	}
	return g.auth.withIdentity(ctx, id), nil
}

func (g guard) restricted(method string) bool {
	for _, m := range g.systemOnly {
		if m == method || strings.HasSuffix(m, "/") && strings.HasPrefix(method, m) {
			return true
		}
	}
	return false
}

func (g guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	ctx, err = g.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer g.recover(info.FullMethod, &err)
	return h(ctx, req)
}

// identityStream is a server stream whose context carries the Identity.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

func (g guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	ctx, err := g.check(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer g.recover(info.FullMethod, &err)
	return h(srv, identityStream{ServerStream: ss, ctx: ctx})
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
	// User, when set, asks to act for that user on every call (UserHeader)
	// unless the call's context already names one (ActAs).
	User string
	// MaxSendMsgSize bounds what this client sends (default MaxMessageSize).
	MaxSendMsgSize int
	// ConnBuffer, when positive, is the connection's read and write buffer
	// (default 1 MiB each, for block streams); a process holding thousands
	// of connections (the worker simulator) sets it small.
	ConnBuffer int
}

type tokenCreds struct {
	bearer string // "Bearer <token>", built once
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": t.bearer}, nil
}
func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// Dial returns a lazily connecting client connection to addr (host:port,
// or unix:/path for a unix socket).
func Dial(addr string, o ClientOptions) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("dial: empty address")
	}
	maxSend := o.MaxSendMsgSize
	if maxSend <= 0 {
		maxSend = MaxMessageSize
	}
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(maxSend), grpc.ForceCodecV2(codec)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithInitialWindowSize(8 << 20),
		grpc.WithInitialConnWindowSize(32 << 20),
		experimental.WithBufferPool(transportPool),
	}
	if o.ConnBuffer > 0 {
		opts = append(opts, grpc.WithReadBufferSize(o.ConnBuffer), grpc.WithWriteBufferSize(o.ConnBuffer), grpc.WithSharedWriteBuffer(true))
	} else {
		opts = append(opts, grpc.WithReadBufferSize(1<<20), grpc.WithWriteBufferSize(1<<20))
	}
	if o.TLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(o.TLS)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{bearer: "Bearer " + o.Token, secure: o.TLS != nil}))
	}
	if o.User != "" {
		opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, co ...grpc.CallOption) error {
			return inv(actAsDefault(ctx, o.User), method, req, reply, cc, co...)
		}), grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, st grpc.Streamer, co ...grpc.CallOption) (grpc.ClientStream, error) {
			return st(actAsDefault(ctx, o.User), desc, cc, method, co...)
		}))
	}
	// A task's calls name the bandwidth budget they draw from (WithRate).
	opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, co ...grpc.CallOption) error {
		return inv(withRateHeader(ctx), method, req, reply, cc, co...)
	}), grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, st grpc.Streamer, co ...grpc.CallOption) (grpc.ClientStream, error) {
		return st(withRateHeader(ctx), desc, cc, method, co...)
	}))
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

// actAsDefault names user in ctx's outgoing metadata unless it names one.
func actAsDefault(ctx context.Context, user string) context.Context {
	if ActingAs(ctx) != "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, UserHeader, user)
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
