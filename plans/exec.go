package plans

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/childproc"
	"github.com/alluvium/alluvium/plans/spec"
)

// Exec runs a command an administrator allowed (jobworker.exec.allow) on
// every file under a path, on the job worker beside the block worker that
// caches the file. The file is given as a local path — the cached block
// file itself when the file is one block cached beside the worker (a
// short-circuit read, no copy), else a spooled copy — or on standard
// input. The submitter's read permission is checked at submit (the whole
// tree) and again for each file before its command runs, and every read
// acts for the submitter. The command runs without the worker's
// environment (no token reaches it) in a scratch directory of its own.
// Each file's exit code and the tail of its output are the task's Output
// (job stat -v); a non-zero exit fails the file, and the task is retried
// as any other.
type Exec struct{}

// execParallel is how many commands one task runs at once.
const execParallel = 4

// execPath is the PATH commands run with (not the worker's).
const execPath = "/usr/local/bin:/usr/bin:/bin"

// Name implements Plan.
func (Exec) Name() string { return "exec" }

// Validate implements Plan: the command must be allowed, the path must
// exist and the submitter must be able to read all of it.
func (Exec) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeExec(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if err := execAllowed(env, c.Command[0]); err != nil {
		return spec.Valid{}, status.Errorf(codes.PermissionDenied, "exec %s: %v", c.Path, err)
	}
	if _, err := statPath(ctx, env, "exec", c.Path); err != nil {
		return spec.Valid{}, err
	}
	if err := requireAccess(ctx, env, "exec", c.Path, accessRead, true); err != nil {
		return spec.Valid{}, err
	}
	return spec.Accept(c)
}

// execAllowed checks cmd against the allow list env carries.
func execAllowed(env Env, cmd string) error {
	p, ok := env.(ExecPolicy)
	if !ok {
		return fmt.Errorf("command %q: this process has no jobworker.exec.allow list", cmd)
	}
	allow := p.ExecAllowed()
	if slices.Contains(allow, cmd) {
		return nil
	}
	if len(allow) == 0 {
		return fmt.Errorf("command %q is not allowed: jobworker.exec.allow is empty, so no command may run", cmd)
	}
	return fmt.Errorf("command %q is not allowed (jobworker.exec.allow: %s)", cmd, strings.Join(allow, ", "))
}

// Done implements Plan.
func (Exec) Done(context.Context, Env, Job) (bool, error) { return true, nil }

// execItem is one file of an exec task.
type execItem struct {
	Path   string `json:"p"`
	FileID int64  `json:"f"`
	Length int64  `json:"l"`
}

// NewPlanner implements Plan: every file, batched per block worker
// caching most of it.
func (Exec) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeExec(job.Config)
	if err != nil {
		return nil, err
	}
	gen := eachFileHeld(func(f *api.FileInfo) (any, *api.FailedPath) {
		if !f.GetCompleted() {
			return nil, failedf(f.GetPath(), "the file is still being written")
		}
		return execItem{Path: f.GetPath(), FileID: f.GetFileId(), Length: f.GetLength()}, nil
	})
	return newItemPlanner(env, "exec", job, walkOpts{Root: c.Path, PageSize: c.PageSize, Blocks: true}, c.Batching, gen)
}

// ExecRun is what one run of the command did: exec's task Output is a
// JSON array of them.
type ExecRun struct {
	Path  string   `json:"path"`            // the file (the first, with perBatch)
	Paths []string `json:"paths,omitempty"` // perBatch: every file of the run
	Exit  int      `json:"exit"`            // -1: it did not run or was killed
	// Output is the last maxOutput bytes of stdout and stderr together.
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"` // why it did not run, or the signal
	// ShortCircuit: the path given was the cached block file itself.
	ShortCircuit bool  `json:"shortCircuit,omitempty"`
	Millis       int64 `json:"ms"`
}

// Run implements Plan.
func (Exec) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	c, err := spec.DecodeExec(t.Config)
	if err != nil {
		return Result{}, err
	}
	// The worker's own list decides too: a job submitted under an older
	// list, or to a job master configured otherwise, does not run here.
	if err := execAllowed(env, c.Command[0]); err != nil {
		return Result{}, status.Errorf(codes.PermissionDenied, "exec on job worker: %v", err)
	}
	files, ok := env.(Files)
	if !ok {
		return Result{}, status.Error(codes.FailedPrecondition, "exec: this process cannot read files for commands (not a job worker)")
	}
	var a itemArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("exec task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	items := make([]execItem, 0, len(a.Items))
	for _, raw := range a.Items {
		var it execItem
		if err := json.Unmarshal(raw, &it); err != nil {
			return Result{}, fmt.Errorf("exec task %d/%d: bad item: %w", t.JobID, t.TaskID, err)
		}
		items = append(items, it)
	}
	x := &execTask{env: env, files: files, c: c, t: t}
	var groups [][]execItem
	if c.PerBatch {
		groups = [][]execItem{items}
	} else {
		for _, it := range items {
			groups = append(groups, []execItem{it})
		}
	}
	runs := make([]ExecRun, len(groups))
	res, err := runEach(ctx, t, len(groups), execParallel, func(ctx context.Context, i int) itemResult {
		g := groups[i]
		r, n, err := x.run(ctx, g)
		runs[i] = r
		if err != nil {
			failed := make([]*api.FailedPath, len(g))
			for j, it := range g {
				failed[j] = &api.FailedPath{Path: it.Path, Error: msg(err)}
			}
			return failedResult(err, failed...)
		}
		return itemResult{bytes: n}
	})
	out := runs[:0]
	for _, r := range runs {
		if r.Path != "" {
			out = append(out, r)
		}
	}
	res.Output, _ = json.Marshal(out)
	return res, err
}

// execTask runs one task's commands.
type execTask struct {
	env   Env
	files Files
	c     spec.ExecConfig
	t     *Task
}

// input is one file made ready for the command.
type execInput struct {
	path    string        // local path (input path)
	short   bool          // path is the cached block file
	r       io.ReadCloser // the file (input stdin), or nil
	cleanup func()
}

// run runs the command on the files of g and returns what it did, the
// bytes it covered and an error when it did not succeed.
func (x *execTask) run(ctx context.Context, g []execItem) (ExecRun, int64, error) {
	start := time.Now()
	r := ExecRun{Path: g[0].Path, Exit: -1}
	if len(g) > 1 {
		for _, it := range g {
			r.Paths = append(r.Paths, it.Path)
		}
	}
	scratch, err := os.MkdirTemp(x.files.ScratchDir(), fmt.Sprintf("exec-%d-%d-", x.t.JobID, x.t.TaskID))
	if err != nil {
		r.Error = err.Error()
		return r, 0, status.Errorf(codes.Internal, "exec %s: scratch directory: %v", r.Path, err)
	}
	defer os.RemoveAll(scratch)
	var ins []*execInput
	defer func() {
		for _, in := range ins {
			in.cleanup()
		}
	}()
	var bytes int64
	for _, it := range g {
		in, err := x.prepare(ctx, it, scratch)
		if err != nil {
			r.Error = msg(err)
			r.Millis = time.Since(start).Milliseconds()
			return r, 0, err
		}
		ins = append(ins, in)
		bytes += it.Length
		r.ShortCircuit = r.ShortCircuit || in.short
	}
	argv := x.argv(ins)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if lp, err := lookPath(argv[0]); err == nil {
		cmd.Path, cmd.Err = lp, nil
	} else {
		r.Error = err.Error()
		return r, 0, status.Errorf(codes.FailedPrecondition, "exec %s: %v", r.Path, err)
	}
	cmd.Dir = scratch
	cmd.Env = []string{"PATH=" + execPath, "HOME=" + scratch, "TMPDIR=" + scratch, "LANG=C.UTF-8",
		"ALLUVIUM_PATH=" + g[0].Path, fmt.Sprintf("ALLUVIUM_JOB_ID=%d", x.t.JobID), fmt.Sprintf("ALLUVIUM_TASK_ID=%d", x.t.TaskID)}
	out := &tailBuffer{max: x.c.MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	if x.c.Input == spec.ExecInputStdin {
		cmd.Stdin = ins[0].r
	}
	// Its own process group: a cancel or timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// And a job worker killed -9 takes the command with it (what the
	// command started itself is not reached: it is in the group).
	childproc.DieWithParent(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	r.Output = out.String()
	r.Millis = time.Since(start).Milliseconds()
	if cmd.ProcessState != nil {
		r.Exit = cmd.ProcessState.ExitCode()
	}
	switch {
	case ctx.Err() != nil:
		r.Error = "killed: " + ctx.Err().Error()
		return r, 0, ctx.Err()
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.Error = "killed by " + ws.Signal().String()
			}
			return r, 0, status.Errorf(codes.Aborted, "exec %s: %s exited %d%s", r.Path, argv[0], r.Exit, lastLine(r.Output))
		}
		r.Error = err.Error()
		return r, 0, status.Errorf(codes.Internal, "exec %s: %v", r.Path, err)
	}
	return r, bytes, nil
}

// lookPath finds an allowed command on execPath (an absolute one as is).
func lookPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		return exec.LookPath(name)
	}
	for _, dir := range filepath.SplitList(execPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found on the job worker (PATH %s)", name, execPath)
}

// argv is the command line for ins: "{}" replaced by the paths, else the
// paths appended (none with input stdin).
func (x *execTask) argv(ins []*execInput) []string {
	var ps []string
	if x.c.Input == spec.ExecInputPath {
		for _, in := range ins {
			ps = append(ps, in.path)
		}
	}
	var argv []string
	replaced := false
	for _, a := range x.c.Command {
		if a == "{}" && len(ps) > 0 {
			argv = append(argv, ps...)
			replaced = true
			continue
		}
		argv = append(argv, a)
	}
	if !replaced {
		argv = append(argv, ps...)
	}
	return argv
}

// prepare opens a file for the command as the job's user: its read
// permission is checked by the open, whatever the input mode.
func (x *execTask) prepare(ctx context.Context, it execItem, scratch string) (*execInput, error) {
	f, err := x.files.OpenFile(ctx, it.Path)
	if err != nil {
		return nil, wrapf(err, "exec %s", it.Path)
	}
	if x.c.Input == spec.ExecInputStdin {
		return &execInput{r: f, cleanup: func() { _ = f.Close() }}, nil
	}
	if in := x.shortCircuit(ctx, it); in != nil {
		_ = f.Close()
		return in, nil
	}
	// Spool a copy: the file spans blocks or is not cached here.
	tmp, err := os.CreateTemp(scratch, "in-*-"+safeBase(it.Path))
	if err != nil {
		_ = f.Close()
		return nil, status.Errorf(codes.Internal, "exec %s: spool: %v", it.Path, err)
	}
	_, err = io.Copy(tmp, f)
	_ = f.Close()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return nil, wrapf(err, "exec %s: spool", it.Path)
	}
	_ = os.Chmod(tmp.Name(), 0o400)
	return &execInput{path: tmp.Name(), cleanup: func() { _ = os.Remove(tmp.Name()) }}, nil
}

// shortCircuit leases the cached block file of a one-block file from the
// block worker beside this job worker (acting for the job's user), or
// returns nil.
func (x *execTask) shortCircuit(ctx context.Context, it execItem) *execInput {
	if it.Length == 0 || x.t.LocalBlockWorker == "" {
		return nil
	}
	bw, err := x.env.BlockWorker(x.t.LocalBlockWorker)
	if err != nil {
		return nil
	}
	resp, err := bw.OpenLocalBlock(ctx, &api.OpenLocalBlockRequest{BlockId: api.BlockID(it.FileID, 0)})
	if err != nil {
		return nil
	}
	release := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = bw.CloseLocalBlock(cctx, &api.CloseLocalBlockRequest{LeaseId: resp.GetLeaseId()})
	}
	if resp.GetLength() != it.Length {
		release() // more than one block
		return nil
	}
	if _, err := os.Stat(resp.GetPath()); err != nil {
		release() // another host's path
		return nil
	}
	return &execInput{path: resp.GetPath(), short: true, cleanup: release}
}

// safeBase is a file name's last element, fit for a temp file name.
func safeBase(p string) string {
	b := filepath.Base(p)
	if b == "/" || b == "." || len(b) > 64 {
		return "file"
	}
	return b
}

// lastLine is ": " and the last non-empty line of out, or "".
func lastLine(out string) string {
	out = strings.TrimRight(out, "\n ")
	if out == "" {
		return ""
	}
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	if len(out) > 200 {
		out = out[:200] + "..."
	}
	return ": " + out
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	lost int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.lost += int64(over)
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lost > 0 {
		return fmt.Sprintf("[%d bytes before]\n%s", b.lost, b.buf)
	}
	return string(b.buf)
}
