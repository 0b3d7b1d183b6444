package plans

import (
	"context"
	"io"
	"sort"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans/spec"
)

// Env is what plans need from the cluster. The job master (planning) and
// the job workers (running) implement it over the api gRPC clients.
type Env interface {
	FS() api.FileSystemMasterClient
	BlockMaster() api.BlockMasterClient
	// BlockWorker returns a client for the block worker at addr
	// (host:rpc-port), reusing connections.
	BlockWorker(addr string) (api.BlockWorkerClient, error)
}

// Job is what a plan sees of a job while planning.
type Job struct {
	ID     int64
	Config []byte // the normalized config Validate returned
	Cursor []byte // nil: start of the round
	Round  int32
	// RoundFailed counts the tasks of this round that failed for good.
	RoundFailed int64
	// Tasks counts the tasks planned so far, every round.
	Tasks int64
	// CreatedMs is when the job was submitted (filter ages count from it).
	CreatedMs int64
	// Deletes is what the job's planners counted so far (Batch.Deletes).
	Deletes int64
}

// TaskSpec is one task a planner produced.
type TaskSpec struct {
	Args        []byte // plan-specific, usually JSON
	Description string // human words: the path it works on
	Bytes       int64  // bytes it will move, for progress
	Files       int64  // files it works on (the job's filesTotal)
	// The block worker its data goes to; the job master places the task on
	// the job worker beside it. Zero/empty: anywhere.
	BlockWorkerID      int64
	BlockWorkerAddress string
}

// Batch is what Planner.Next returns: tasks, and the cursor just after them.
type Batch struct {
	Tasks  []TaskSpec
	Cursor []byte
	Done   bool              // planning of this round is over
	Failed []*api.FailedPath // paths the planner found it cannot handle
	// Files (and their bytes) the planner found already done and left
	// alone, and files it found to delete, since the last batch.
	FilesSkipped, BytesSkipped, Deletes int64
}

// Planner streams a job's tasks.
type Planner interface {
	// Next returns at most max tasks. It may return fewer (even none) with
	// an advanced cursor, so progress through a long listing is saved.
	Next(ctx context.Context, max int) (Batch, error)
	Close() error
}

// Task is one task attempt as a job worker runs it.
type Task struct {
	JobID   int64
	TaskID  int64
	Attempt int32
	Args    []byte
	Config  []byte // the job's normalized config
	// Progress reports the bytes done so far (monotonic).
	Progress func(bytesDone int64)
	// Limiter is this worker's share of the job's bandwidth limit; nil:
	// none. The block workers throttle the bytes a task's calls move to it
	// already (rpc.WithRate, on the task's context); a plan that moves
	// bytes itself draws them from it.
	Limiter *rate.Limiter
	// LocalBlockWorker is the block worker beside this job worker.
	LocalBlockWorker string
}

// BatchRunner is a plan whose tasks cost most in reaching where they run
// (a plugin process: a round trip each): the job worker hands it several
// queued tasks of one job at once. Each task keeps its own context
// (timeout, cancel, user) and is answered on its own: done(i, ...) once
// per task, as each ends, from any goroutine, so progress, results and
// retries stay per task. RunBatch returns when every task has had its
// done.
type BatchRunner interface {
	RunBatch(ctx context.Context, env Env, tasks []BatchTask, done func(i int, res Result, err error))
}

// RemoteRunner is a plan whose tasks' work is done by other servers: a
// task only calls them and waits (a load's CacheBlocks: the block worker
// reads the UFS, writes the block and commits it). A job worker runs such
// tasks beside its jobworker.threads, up to jobworker.remote-tasks at
// once, and the leader hands it that many of them beside its capacity
// (RegisterJobWorkerRequest.remote_capacity): a thread held only to wait
// on a call would bound tiny jobs by the threads, not by the work.
type RemoteRunner interface {
	RunsRemotely() bool
}

// RunsRemotely says whether the plan named name at version is a
// RemoteRunner that runs remotely: false for a plan not registered here,
// and for a plugin's (it has a version), whatever its name.
func RunsRemotely(name, version string) bool {
	if version != "" {
		return false
	}
	regMu.RLock()
	p := registry[name]
	regMu.RUnlock()
	r, ok := p.(RemoteRunner)
	return ok && r.RunsRemotely()
}

// BatchTask is one task of a batch and the context it runs with.
type BatchTask struct {
	Ctx  context.Context
	Task *Task
}

// Result is what a task did.
type Result struct {
	Bytes  int64
	Failed []*api.FailedPath
	// Output is what the task reports to users, plan-specific JSON kept
	// with the task (job stat -v; at most MaxOutput bytes): exec's exit
	// codes and output per file.
	Output []byte
	// Files (and bytes) the task found already done and did not move;
	// they are not in Bytes.
	FilesSkipped, BytesSkipped int64
}

// MaxOutput bounds a task's Result.Output; the job worker replaces a
// larger one with an error object.
const MaxOutput = 256 << 10

// Files is what a job worker's Env adds for plans that hand files to
// programs (exec, plugins).
type Files interface {
	// OpenFile opens a complete file for reading as ctx's user: its read
	// permission is checked first.
	OpenFile(ctx context.Context, path string) (io.ReadCloser, error)
	// CreateFile creates path (and missing parents) as ctx's user; the
	// file appears whole when the writer is closed.
	CreateFile(ctx context.Context, path string, overwrite bool) (io.WriteCloser, error)
	// ScratchDir is a directory of the job worker's own where a task may
	// spool files; the task removes what it made.
	ScratchDir() string
}

// ExecPolicy is what a job master's and a job worker's Env add for the
// exec plan: the commands an administrator allows (jobworker.exec.allow).
type ExecPolicy interface {
	ExecAllowed() []string
}

// Plan is one kind of job. See the package documentation.
type Plan interface {
	Name() string
	Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error)
	NewPlanner(ctx context.Context, env Env, job Job) (Planner, error)
	Run(ctx context.Context, env Env, task *Task) (Result, error)
	Done(ctx context.Context, env Env, job Job) (bool, error)
}

var (
	regMu    sync.RWMutex
	registry = map[string]Plan{}
)

// The built-in plans: one line per plan.
func init() {
	Register(Load{})
	Register(Persist{})
	Register(Replicate{})
	Register(Move{})
	Register(Copy{})
	Register(Exec{})
	Register(Sync{})
	Register(Noop{})
}

// Register adds a plan; a second plan with the same name replaces the first
// (tests register their own).
func Register(p Plan) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[p.Name()] = p
}

// Lookup returns the plan called name, or an InvalidArgument error listing
// the known plans.
func Lookup(name string) (Plan, error) {
	regMu.RLock()
	p, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown plan %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return p, nil
}

// Names lists the registered plans, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WithExecAllowed returns env carrying the exec plan's allow list (a job
// master's planning Env).
func WithExecAllowed(env Env, allow []string) Env {
	return execPolicyEnv{Env: env, allow: append([]string(nil), allow...)}
}

type execPolicyEnv struct {
	Env
	allow []string
}

func (e execPolicyEnv) ExecAllowed() []string { return e.allow }

// CheckConfig checks what can be known of a config of plan without the
// cluster — a built-in plan's strict decoding, defaults and ranges — for a
// caller that must refuse a bad config long before the job is submitted (a
// pipeline's later steps). A plan with no such knowledge passes; Validate
// checks everything when the job is submitted.
func CheckConfig(plan string, config []byte) error {
	if !spec.Known(plan) {
		return nil
	}
	_, err := spec.Decode(plan, config)
	return err
}

// Where a plan comes from (Info.Origin).
const (
	OriginBuiltIn = "built-in"
	OriginPlugin  = "plugin"
)

// BuiltinVersion is the version the built-in plans report: the binary's
// (set by cmd/alluvium at start).
var BuiltinVersion = "dev"

// Info describes a registered plan for listings (`job plans`) and for the
// job workers' registration: a plugin plan's tasks go only to job workers
// with the same name and version.
type Info struct {
	Name, Origin, Version, Description string
	Path                               string // a plugin's executable
}

// Describer is a plan that describes itself (plugins); any other plan is
// built in.
type Describer interface {
	Info() Info
}

// InfoOf describes p.
func InfoOf(p Plan) Info {
	if d, ok := p.(Describer); ok {
		return d.Info()
	}
	return Info{Name: p.Name(), Origin: OriginBuiltIn, Version: BuiltinVersion}
}

// PluginVersion is the version a job of p records (JobInfo.plan_version):
// a plugin's version, "" for a built-in plan (every job worker runs it).
func PluginVersion(p Plan) string {
	if i := InfoOf(p); i.Origin == OriginPlugin {
		return i.Version
	}
	return ""
}

// Proto is i as the api carries it.
func (i Info) Proto() *api.PlanInfo {
	return &api.PlanInfo{Name: i.Name, Origin: i.Origin, Version: i.Version, Description: i.Description, Path: i.Path}
}

// List describes every registered plan, by name.
func List() []Info {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]Info, 0, len(registry))
	for _, p := range registry {
		out = append(out, InfoOf(p))
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Registered returns the plan registered under name, if any (no error:
// for loaders deciding whether a name is taken).
func Registered(name string) (Plan, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	p, ok := registry[name]
	return p, ok
}
