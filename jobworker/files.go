package jobworker

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/sdk"
)

// workerEnv is the Env tasks run with: the cluster (plans.Env), plus what
// plans that hand files to programs need — reading a file as the job's
// user (the SDK's reader: cached blocks, short-circuit on this host, UFS
// on a miss), a scratch directory, and the exec allow list.
type workerEnv struct {
	plans.Env
	files   *sdk.Client
	allow   []string
	scratch string
}

var (
	_ plans.Files      = (*workerEnv)(nil)
	_ plans.ExecPolicy = (*workerEnv)(nil)
)

func newWorkerEnv(env plans.Env, cfg *config.Config, dial rpc.ClientOptions) (*workerEnv, error) {
	var scratch string
	if cfg.Worker.Dir != "" {
		scratch = filepath.Join(cfg.Worker.Dir, "scratch")
		// What an earlier run left (a kill -9 mid-task) goes first.
		_ = os.RemoveAll(scratch)
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			return nil, fmt.Errorf("jobworker: scratch directory: %w", err)
		}
	} else { // a worker built by a test without directories
		d, err := os.MkdirTemp("", "alluvium-jobworker-scratch-")
		if err != nil {
			return nil, fmt.Errorf("jobworker: scratch directory: %w", err)
		}
		scratch = d
	}
	opts := []sdk.Option{sdk.WithMaster(cfg.Worker.Master), sdk.WithToken(dial.Token)}
	if dial.TLS != nil {
		opts = append(opts, sdk.WithTLS(dial.TLS))
	}
	c, err := sdk.Dial(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("jobworker: %w", err)
	}
	return &workerEnv{Env: env, files: c, allow: append([]string(nil), cfg.JobWorker.Exec.Allow...), scratch: scratch}, nil
}

// OpenFile implements plans.Files: ctx acts for the job's user.
func (e *workerEnv) OpenFile(ctx context.Context, path string) (io.ReadCloser, error) {
	return e.files.Open(ctx, path, sdk.OpenOptions{})
}

// ScratchDir implements plans.Files.
func (e *workerEnv) ScratchDir() string { return e.scratch }

// ExecAllowed implements plans.ExecPolicy.
func (e *workerEnv) ExecAllowed() []string { return e.allow }

func (e *workerEnv) close() error { return e.files.Close() }
