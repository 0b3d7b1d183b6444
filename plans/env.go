package plans

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// GRPCEnv is the Env of a real cluster: the FS master's services and block
// workers dialled on first use.
type GRPCEnv struct {
	opts   rpc.ClientOptions
	fsConn *grpc.ClientConn
	fs     api.FileSystemMasterClient
	bm     api.BlockMasterClient

	mu      sync.Mutex
	workers map[string]*grpc.ClientConn
}

// DialEnv returns an Env talking to the FS master at fsMaster (host:port).
// Connections are made lazily.
func DialEnv(fsMaster string, o rpc.ClientOptions) (*GRPCEnv, error) {
	cc, err := rpc.Dial(fsMaster, o)
	if err != nil {
		return nil, fmt.Errorf("FS master %s: %w", fsMaster, err)
	}
	return &GRPCEnv{
		opts: o, fsConn: cc,
		fs: api.NewFileSystemMasterClient(cc), bm: api.NewBlockMasterClient(cc),
		workers: map[string]*grpc.ClientConn{},
	}, nil
}

// FS implements Env.
func (e *GRPCEnv) FS() api.FileSystemMasterClient { return e.fs }

// BlockMaster implements Env.
func (e *GRPCEnv) BlockMaster() api.BlockMasterClient { return e.bm }

// BlockWorker implements Env.
func (e *GRPCEnv) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cc, ok := e.workers[addr]; ok {
		return api.NewBlockWorkerClient(cc), nil
	}
	cc, err := rpc.Dial(addr, e.opts)
	if err != nil {
		return nil, fmt.Errorf("block worker %s: %w", addr, err)
	}
	e.workers[addr] = cc
	return api.NewBlockWorkerClient(cc), nil
}

// Close closes every connection.
func (e *GRPCEnv) Close() error {
	e.mu.Lock()
	for _, cc := range e.workers {
		cc.Close()
	}
	e.workers = map[string]*grpc.ClientConn{}
	e.mu.Unlock()
	return e.fsConn.Close()
}
