package client

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Pool keeps one client connection per address, dialled on first use and
// shared by every caller (gRPC multiplexes calls over it). The zero Pool is
// not usable; make one with NewPool.
type Pool struct {
	opts  rpc.ClientOptions
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPool returns an empty pool that dials with o.
func NewPool(o rpc.ClientOptions) *Pool {
	return &Pool{opts: o, conns: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to addr (host:port or unix:path), dialling it
// the first time. Dialling is lazy, so an unreachable address fails on the
// first call over the connection, not here.
func (p *Pool) Get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := rpc.Dial(addr, p.opts)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = cc
	return cc, nil
}

// Forget closes and drops the connection to addr, so the next Get dials
// again (after the peer moved or restarted).
func (p *Pool) Forget(addr string) {
	p.mu.Lock()
	cc := p.conns[addr]
	delete(p.conns, addr)
	p.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
}

// Close closes every connection held now (a later Get dials afresh).
func (p *Pool) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[string]*grpc.ClientConn{}
	p.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
}

// BlockWorker returns a client of the block worker at addr (host:port, or
// unix:path for its socket), on the pool's connection.
func (p *Pool) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	cc, err := p.Get(addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "block worker %s: %v", addr, err)
	}
	return api.NewBlockWorkerClient(cc), nil
}

// JobMaster returns a client of the job master at addr alone: no leader
// discovery, no retries (a follower forwarding to the leader raft names,
// a job worker's session with the leader).
func (p *Pool) JobMaster(addr string) (api.JobMasterClient, error) {
	cc, err := p.Get(addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "job master %s: %v", addr, err)
	}
	return api.NewJobMasterClient(cc), nil
}

// FSMasterMember returns clients of the FS master at addr alone: no
// leader discovery, no retries (how the members of an embedded journal's
// group ask each other, and how a report asks each member).
func (p *Pool) FSMasterMember(addr string) (api.FileSystemMasterClient, api.EmbeddedJournalClient, error) {
	cc, err := p.Get(addr)
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "FS master %s: %v", addr, err)
	}
	return api.NewFileSystemMasterClient(cc), api.NewEmbeddedJournalClient(cc), nil
}
