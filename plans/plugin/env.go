package plugin

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

// Env is the Env plans run with on job masters and job workers: the
// cluster (plans.Env), plus what plans that hand files to programs (exec,
// plugins) need — reading and writing a file as the job's user (the SDK's
// reader and writer: cached blocks, short-circuit on this host, UFS on a
// miss), a scratch directory, and the exec allow list.
type Env struct {
	plans.Env
	files   *sdk.Client
	allow   []string
	scratch string
}

var (
	_ plans.Files      = (*Env)(nil)
	_ plans.ExecPolicy = (*Env)(nil)
)

// NewEnv wraps env: files are read and written through the FS masters at
// master (a comma-separated list) with dial's credentials, acting for each
// call's user; scratch files go under dir ("": a temporary directory).
func NewEnv(env plans.Env, cfg *config.Config, master, dir string, dial rpc.ClientOptions) (*Env, error) {
	// A worker built by a test without directories spools into the
	// system's temporary directory: each task makes its own directory
	// there and removes it, so a process killed between tasks leaves
	// nothing behind (a directory of the process's own did, hundreds of
	// them after a test suite's kill -9s).
	scratch := os.TempDir()
	if dir != "" {
		scratch = filepath.Join(dir, "scratch")
		// What an earlier run left (a kill -9 mid-task) goes first.
		_ = os.RemoveAll(scratch)
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			return nil, fmt.Errorf("jobworker: scratch directory: %w", err)
		}
	}
	opts := []sdk.Option{sdk.WithMaster(master), sdk.WithToken(dial.Token)}
	if dial.TLS != nil {
		opts = append(opts, sdk.WithTLS(dial.TLS))
	}
	c, err := sdk.Dial(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("jobworker: %w", err)
	}
	return &Env{Env: env, files: c, allow: append([]string(nil), cfg.JobWorker.Exec.Allow...), scratch: scratch}, nil
}

// OpenFile implements plans.Files: ctx acts for the job's user.
func (e *Env) OpenFile(ctx context.Context, path string) (io.ReadCloser, error) {
	return e.files.Open(ctx, path, sdk.OpenOptions{})
}

// CreateFile implements plans.Files: missing parents are made; the file
// appears whole on Close.
func (e *Env) CreateFile(ctx context.Context, path string, overwrite bool) (io.WriteCloser, error) {
	return e.files.Create(ctx, path, sdk.CreateOptions{Recursive: true, Overwrite: overwrite})
}

// ScratchDir implements plans.Files.
func (e *Env) ScratchDir() string { return e.scratch }

// ExecAllowed implements plans.ExecPolicy.
func (e *Env) ExecAllowed() []string { return e.allow }

// Close closes the file connections.
func (e *Env) Close() error {
	return e.files.Close()
}

// ForgetBlockWorker passes the job master's word that a block worker is
// lost on to the cluster's client, when it listens.
func (e *Env) ForgetBlockWorker(addr string) {
	if f, ok := e.Env.(interface{ ForgetBlockWorker(addr string) }); ok {
		f.ForgetBlockWorker(addr)
	}
}
