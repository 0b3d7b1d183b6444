package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Options configure how a client reaches a group of masters.
type Options struct {
	// Auth is how connections authenticate (token, TLS, acting-for user).
	Auth rpc.ClientOptions
	// CallTimeout bounds each attempt of a unary call (0: only the
	// caller's context bounds it).
	CallTimeout time.Duration
	// Retries is how often an idempotent call lost to a connection failure
	// is sent again (FS master; 0: never). Job-master calls are all
	// idempotent and are retried until ElectionWait.
	Retries int
	// ElectionWait bounds how long a call keeps waiting for a leader: no
	// leader known, a leader that moved, and (job master) a leader down.
	// 0: DefaultElectionWait; negative: no waiting, each call is sent once
	// (and follows one redirect), for a caller with its own retry loop.
	ElectionWait time.Duration
}

// Defaults returns the options the servers use for each other: 3 retries,
// 20 s for an election, no per-call timeout.
func Defaults(auth rpc.ClientOptions) Options {
	return Options{Auth: auth, Retries: 3, ElectionWait: DefaultElectionWait}
}

// DefaultElectionWait is how long a call waits for a group to (re)elect a
// leader before it gives up.
const DefaultElectionWait = 20 * time.Second

// lookupTimeout bounds one GetLeader question during discovery.
const lookupTimeout = 2 * time.Second

// idempotentKey marks a context whose calls may be sent twice.
type idempotentKey struct{}

// Idempotent returns ctx whose calls through this package may be sent
// again after a connection failure: the caller knows that executing one
// twice has the effect of once (SetAttribute of the same attributes, Free).
// Reads are idempotent without it.
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

func markedIdempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}

// policy is what differs between the FS masters and the job masters.
type policy struct {
	what string // "FS master", "job master": for errors
	// lookup is the full method name of the group's GetLeader.
	lookup string
	// idempotent says whether method may be resent after a connection
	// failure.
	idempotent func(method string) bool
	// retries bounds those resends (-1: until the election wait).
	retries int
}

// group is a set of masters of which one leads: the leader is found by
// asking them (GetLeader), remembered, and followed when a member names
// another or the leader stops answering. It is a grpc.ClientConnInterface.
type group struct {
	pol   policy
	o     Options
	addrs []string
	pool  *Pool

	findMu sync.Mutex // one discovery at a time

	mu     sync.Mutex
	leader string        // "": unknown
	gone   chan struct{} // closed when leader is forgotten
	next   int           // the member to ask first
}

func newGroup(addrs []string, o Options, pol policy) (*group, error) {
	var clean []string
	for _, a := range addrs {
		clean = append(clean, SplitAddrs(a)...)
	}
	if len(clean) == 0 {
		return nil, fmt.Errorf("no %s address", pol.what)
	}
	if o.ElectionWait == 0 {
		o.ElectionWait = DefaultElectionWait
	}
	return &group{pol: pol, o: o, addrs: clean, pool: NewPool(o.Auth)}, nil
}

// Addrs returns the members' addresses as configured.
func (g *group) Addrs() []string { return append([]string(nil), g.addrs...) }

// Close closes every connection.
func (g *group) Close() error {
	g.pool.Close()
	return nil
}

// noLeaderError says the members answered but none named a leader: no call
// was sent, so any call may be tried again.
type noLeaderError struct{ msg string }

func (e *noLeaderError) Error() string { return e.msg }
func (e *noLeaderError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.msg)
}

// Leader returns the leader's address, asking the members when it is not
// known. The error is a gRPC status error: Unavailable when no member
// could be reached or none knows a leader, or what a member answered
// (Unauthenticated for a wrong token, say).
func (g *group) Leader(ctx context.Context) (string, error) {
	if l := g.current(); l != "" {
		return l, nil
	}
	g.findMu.Lock()
	defer g.findMu.Unlock()
	if l := g.current(); l != "" {
		return l, nil // found by the call we waited for
	}
	g.mu.Lock()
	start := g.next
	g.mu.Unlock()
	var errs []string
	electing := false
	quorum := "" // what a leader needs, as a member that knows no leader says
	n := len(g.addrs)
	for i := 0; i < n; i++ {
		addr := g.addrs[(start+i)%n]
		cc, err := g.pool.Get(addr)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		resp := new(api.GetLeaderResponse)
		err = cc.Invoke(cctx, g.pol.lookup, &api.GetLeaderRequest{}, resp)
		cancel()
		if status.Code(err) == codes.Unimplemented {
			// A server without GetLeader (a test double, an older build)
			// is a group of one: it leads.
			err, resp = nil, &api.GetLeaderResponse{LeaderRpcAddress: addr}
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", status.FromContextError(ctx.Err()).Err()
			}
			switch status.Code(err) {
			case codes.Unavailable, codes.DeadlineExceeded:
				errs = append(errs, fmt.Sprintf("%s: %s", addr, status.Convert(err).Message()))
				continue
			}
			return "", err // a wrong token, say: asking again changes nothing
		}
		leader := resp.GetLeaderRpcAddress()
		if leader == "" {
			electing = true
			errs = append(errs, fmt.Sprintf("%s: no leader yet", addr))
			if quorum == "" {
				quorum = quorumOf(resp)
			}
			continue
		}
		if resp.GetNodeId() != "" && resp.GetNodeId() == resp.GetLeaderId() {
			// The member asked leads: keep the address that reached it
			// (what it advertises may not be reachable from here).
			leader = addr
		}
		g.mu.Lock()
		g.next = (start + i) % n
		g.setLocked(leader)
		g.mu.Unlock()
		return leader, nil
	}
	g.mu.Lock()
	g.next = (start + 1) % n
	g.mu.Unlock()
	msg := fmt.Sprintf("no %s leader: %s%s", g.pol.what, quorum, strings.Join(errs, "; "))
	if electing {
		return "", &noLeaderError{msg: msg}
	}
	return "", status.Error(codes.Unavailable, msg)
}

// quorumOf says what the group of a member that knows no leader needs to
// elect one: a majority of its voters ("" when it names none).
func quorumOf(r *api.GetLeaderResponse) string {
	var voters []string
	for _, s := range r.GetServers() {
		if s.GetSuffrage() == "" || s.GetSuffrage() == "Voter" {
			voters = append(voters, s.GetId())
		}
	}
	if len(voters) < 2 {
		return ""
	}
	return fmt.Sprintf("the group has no quorum: a leader needs %d of its %d voters (%s) — ", len(voters)/2+1, len(voters), strings.Join(voters, ", "))
}

func (g *group) current() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leader
}

func (g *group) setLocked(addr string) {
	if g.leader == addr {
		return
	}
	if g.gone != nil {
		close(g.gone)
	}
	g.leader, g.gone = addr, make(chan struct{})
}

// Forget drops addr as the leader (it failed), so the next call asks the
// members again. Forgetting an address that no longer leads does nothing.
func (g *group) Forget(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader != addr || addr == "" {
		return
	}
	close(g.gone)
	g.leader, g.gone = "", nil
}

// follow makes named the leader after the member at from answered that it
// does not lead ("" named: unknown, ask again).
func (g *group) follow(from, named string) {
	if named == "" {
		g.Forget(from)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader == from || g.leader == "" {
		g.setLocked(named)
	}
}

// Gone returns a channel closed once addr is no longer the leader (at once
// when it is not now): a long call to it should give up and follow.
func (g *group) Gone(addr string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader != addr || g.gone == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return g.gone
}

// outcome sorts a failed attempt.
type outcome int

const (
	final       outcome = iota // return the error
	notExecuted                // no member executed it: any call may go again
	connFailed                 // it may or may not have run: idempotent calls only
)

// classify sorts err from an attempt against addr (trailer: the call's
// response trailer) and updates what the group knows.
func (g *group) classify(ctx context.Context, addr string, err error, trailer metadata.MD) outcome {
	var nl *noLeaderError
	switch {
	case errors.As(err, &nl):
		return notExecuted
	case status.Code(err) == codes.Unavailable && len(trailer.Get(api.LeaderTrailer)) > 0:
		g.follow(addr, trailer.Get(api.LeaderTrailer)[0])
		return notExecuted
	case status.Code(err) == codes.Unavailable:
		g.Forget(addr)
		return connFailed
	case status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil:
		// The attempt's own timeout, not the caller's: a leader that does
		// not answer (partitioned, frozen), or is slow to answer a call it
		// may have executed. It is forgotten like one that is down, so the
		// next attempt asks the group who leads now, and the call is lost
		// like one on a broken connection.
		g.Forget(addr)
		return connFailed
	}
	return final
}

// retry decides whether to try again after an attempt, and waits the
// backoff (jittered, so the clients a failover turned away do not come
// back at one instant). fails counts the connection failures so far.
type retry struct {
	g        *group
	deadline time.Time
	backoff  *Backoff
	fails    int
}

func (g *group) newRetry() *retry {
	r := &retry{g: g, deadline: time.Now(), backoff: NewBackoff(50*time.Millisecond, maxRetryBackoff)}
	if g.o.ElectionWait > 0 {
		r.deadline = r.deadline.Add(max(g.o.ElectionWait, g.o.CallTimeout))
	}
	return r
}

// again reports whether to send the call again; it sleeps the backoff
// first. The first redirect to a named leader goes there at once, even
// with no time left to wait.
func (r *retry) again(ctx context.Context, o outcome, idempotent, redirected bool) bool {
	switch o {
	case final:
		return false
	case connFailed:
		if !idempotent {
			return false
		}
		r.fails++
		if p := r.g.pol.retries; p >= 0 && r.fails > p {
			return false
		}
	}
	if redirected && ctx.Err() == nil {
		return true
	}
	wait := r.backoff.Next()
	if ctx.Err() != nil || time.Now().Add(wait).After(r.deadline) {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// maxRetryBackoff caps the wait between attempts: an election takes one
// to two heartbeat timeouts (1 s by default), and a caller that waits
// longer than a fraction of that between questions adds its wait to the
// failover it sees.
const maxRetryBackoff = 250 * time.Millisecond

// Invoke implements grpc.ClientConnInterface: the call goes to the leader
// and is retried as the package documentation says.
func (g *group) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	idem := g.pol.idempotent(method) || markedIdempotent(ctx)
	r := g.newRetry()
	redirects := 0
	for {
		addr, err := g.Leader(ctx)
		var trailer metadata.MD
		if err == nil {
			var cc *grpc.ClientConn
			if cc, err = g.pool.Get(addr); err == nil {
				actx, cancel := ctx, context.CancelFunc(func() {})
				if g.o.CallTimeout > 0 {
					actx, cancel = context.WithTimeout(ctx, g.o.CallTimeout)
				}
				err = cc.Invoke(actx, method, args, reply, append(opts, grpc.Trailer(&trailer))...)
				cancel()
				if err == nil {
					return nil
				}
			}
		}
		o := g.classify(ctx, addr, err, trailer)
		named := ""
		if v := trailer.Get(api.LeaderTrailer); len(v) > 0 {
			named = v[0]
		}
		// A redirect to a named leader goes there at once, once; a second
		// one (members disagree while an election settles) backs off.
		redirected := o == notExecuted && named != "" && named != addr && redirects == 0
		if redirected {
			redirects++
		}
		if !r.again(ctx, o, idem, redirected) {
			if ctx.Err() != nil && status.Code(err) == codes.Unavailable {
				err = status.FromContextError(ctx.Err()).Err()
			}
			return err
		}
	}
}

// NewStream implements grpc.ClientConnInterface: the stream opens on the
// leader; it is not retried (the caller resumes it), but a failure that
// says the leader moved or is down makes the group ask again next time.
func (g *group) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	addr, err := g.Leader(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := g.pool.Get(addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s %s: %v", g.pol.what, addr, err)
	}
	s, err := cc.NewStream(ctx, desc, method, opts...)
	if err != nil {
		g.classify(ctx, addr, err, nil)
		return nil, err
	}
	return &leaderStream{ClientStream: s, g: g, addr: addr, ctx: ctx}, nil
}

// leaderStream tells the group when its leader failed.
type leaderStream struct {
	grpc.ClientStream
	g    *group
	addr string
	ctx  context.Context
}

func (s *leaderStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && err != io.EOF {
		s.g.classify(s.ctx, s.addr, err, s.Trailer())
	}
	return err
}

func (s *leaderStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && err != io.EOF {
		s.g.classify(s.ctx, s.addr, err, nil)
	}
	return err
}

// SplitAddrs splits a comma-separated address list (client.master,
// ALLUVIUM_JOB_MASTER, ...) into its non-empty, trimmed entries.
func SplitAddrs(list string) []string {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// IsHostPort reports whether a is host:port with a port, as every master
// and peer address must be.
func IsHostPort(a string) bool {
	_, port, err := net.SplitHostPort(a)
	return err == nil && port != ""
}
