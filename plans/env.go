package plans

import (
	"fmt"

	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
)

// GRPCEnv is the Env of a real cluster: the FS master's services and block
// workers dialled on first use.
type GRPCEnv struct {
	fsConn  *grpc.ClientConn
	fs      api.FileSystemMasterClient
	bm      api.BlockMasterClient
	workers *client.Pool
}

// DialEnv returns an Env talking to the FS master at fsMaster (host:port).
// Connections are made lazily.
func DialEnv(fsMaster string, o rpc.ClientOptions) (*GRPCEnv, error) {
	cc, err := rpc.Dial(fsMaster, o)
	if err != nil {
		return nil, fmt.Errorf("FS master %s: %w", fsMaster, err)
	}
	return &GRPCEnv{
		fsConn: cc,
		fs:     api.NewFileSystemMasterClient(cc), bm: api.NewBlockMasterClient(cc),
		workers: client.NewPool(o),
	}, nil
}

// FS implements Env.
func (e *GRPCEnv) FS() api.FileSystemMasterClient { return e.fs }

// BlockMaster implements Env.
func (e *GRPCEnv) BlockMaster() api.BlockMasterClient { return e.bm }

// BlockWorker implements Env.
func (e *GRPCEnv) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	cc, err := e.workers.Get(addr)
	if err != nil {
		return nil, fmt.Errorf("block worker %s: %w", addr, err)
	}
	return api.NewBlockWorkerClient(cc), nil
}

// Close closes every connection.
func (e *GRPCEnv) Close() error {
	e.workers.Close()
	return e.fsConn.Close()
}
