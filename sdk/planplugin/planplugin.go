// Package planplugin is all a plan plugin's author imports: a plan of
// your own as a separate executable that job masters and job workers load
// from plans.dir (default <home>/plans), run as a child process over
// hashicorp/go-plugin (gRPC), exactly as Nomad runs task drivers.
//
// A plugin implements the three parts a built-in plan has — validate a
// config, plan tasks, run one task — and calls Serve from main:
//
//	func main() { planplugin.Serve(myPlan{}) }
//
// Planning is a stateless call: Plan gets the cursor the job master kept
// in Raft after the last batch and returns the next batch with the cursor
// after it, so a new leader resumes exactly there (no task planned twice).
// Run does one task on the job worker the task was placed on (beside the
// block worker a TaskSpec names: use Holder). Tasks are retried (up to
// jobmaster.task.max-attempts), so Run must be idempotent. A job worker
// hands a process several tasks of a job at once (up to its
// jobworker.threads), and the SDK runs them in goroutines of their own:
// Run must be safe to call concurrently.
//
// A plugin never sees the cluster's token: every call (every task) gets
// a Host, a client the job master or job worker serves for that call
// only, acting for the job's user (the FS master checks that user's
// permissions), with the few calls a plan needs — Stat, List, CheckAccess, Open, Create,
// Delete, Progress. It stops working when the call returns. ctx is
// cancelled when the job is cancelled or the task times out; a plugin
// that does not return then is killed.
package planplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// Handshake is the go-plugin handshake of plan plugins; a program started
// without it (by hand) says so and exits. Protocol 3: a job worker hands
// a plugin process its tasks in batches on one RunTasks stream, and the
// host a process calls back is one connection for the process's life,
// each request carrying its call's token (CallHeader); a plugin of an
// older protocol (2: a Run call per task; 1: a host connection per call)
// is refused at load, naming both versions.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  3,
	MagicCookieKey:   "ALLUVIUM_PLAN_PLUGIN",
	MagicCookieValue: "a2c1f0e7-plan-plugin",
}

// PluginName is the name the plan is dispensed under.
const PluginName = "plan"

// CallHeader is the gRPC metadata key of a call's token: the host sends it
// with every call to the plugin, and the plugin's requests back to the
// host carry it, so the host serves each request for its own call — and
// refuses one from a call that has ended.
const CallHeader = "alluvium-plan-call"

// Info names a plan. Name is the word users submit (`alluvium job submit
// NAME --config JSON`); job workers run a job's tasks only with the same
// Version installed.
type Info struct {
	Name, Version, Description string
}

// File is a file's or directory's status, with its blocks' locations.
type File = api.FileInfo

// FailedPath is a path a plan could not handle, with why.
type FailedPath struct{ Path, Error string }

// Valid is a config the plan accepted: its normalized JSON (what Plan and
// Run get back) and what the scheduler enforces.
type Valid struct {
	Config []byte
	// Workers, when set, are the only block workers the job may use;
	// ExcludeWorkers are never used (id, host or host:port).
	Workers, ExcludeWorkers []string
	// EndsWithTasks says Done would answer true, no error, whatever the
	// job did: the job then ends in the same raft entry as its last task,
	// and Done is not asked (one call and one raft entry less a job).
	EndsWithTasks bool
}

// Job is a job as Plan and Done see it.
type Job struct {
	ID     int64
	Config []byte
	Cursor []byte // nil: the start of the round
	Round  int32
	// RoundFailed counts the tasks of this round that failed for good.
	RoundFailed int64
}

// TaskSpec is one task Plan produced.
type TaskSpec struct {
	Args        []byte // yours: Run gets them back
	Description string // human words: the path it works on
	Bytes       int64  // for progress
	// The block worker its data is on: the task runs on the job worker
	// beside it (Holder picks it from a File). Zero: anywhere.
	BlockWorkerID      int64
	BlockWorkerAddress string
}

// Batch is what Plan returns: at most max tasks and the cursor after them.
type Batch struct {
	Tasks  []TaskSpec
	Cursor []byte
	Done   bool // planning of this round is over
	Failed []FailedPath
}

// Task is one task attempt as Run sees it.
type Task struct {
	JobID, TaskID int64
	Attempt       int32
	Args, Config  []byte
	// LocalBlockWorker is the block worker beside this job worker.
	LocalBlockWorker string
}

// Result is what a task did. Output is yours to fill (JSON): job stat -v
// shows it (at most 256 KiB).
type Result struct {
	Bytes  int64
	Failed []FailedPath
	Output []byte
}

// Plan is a plan plugin's logic.
type Plan interface {
	Info() Info
	// Validate decodes and checks a job's config (strictly: refuse unknown
	// fields) and returns it normalized; errors should be status errors
	// (InvalidArgument, NotFound, PermissionDenied) naming the field or
	// path. It runs on the job master leader at submit.
	Validate(ctx context.Context, h Host, config []byte) (Valid, error)
	// Plan returns the next batch of at most max tasks after job.Cursor.
	Plan(ctx context.Context, h Host, job Job, max int) (Batch, error)
	// Run does one task on a job worker; other tasks may run at the same
	// time in the same process.
	Run(ctx context.Context, h Host, t Task) (Result, error)
	// Done is asked when a round's tasks have all ended: true ends the job,
	// false plans another round (job.Round+1).
	Done(ctx context.Context, h Host, job Job) (bool, error)
}

// Host is the cluster as a plugin reaches it during one call, acting for
// the job's user.
type Host interface {
	Stat(ctx context.Context, path string) (*File, error)
	// List returns a page of path's children (recursive: of everything
	// below it, directories first then their entries), with block
	// locations, and the token of the next page ("" after the last).
	List(ctx context.Context, path, pageToken string, pageSize int, recursive bool) ([]*File, string, error)
	// CheckAccess fails with PermissionDenied unless the job's user may
	// access path as bits asks (4 read, 2 write, 1 execute).
	CheckAccess(ctx context.Context, path string, bits uint32, recursive bool) error
	// Open reads a complete file (on a job worker: from the cache beside
	// it when it is there).
	Open(ctx context.Context, path string) (io.ReadCloser, error)
	// Create writes a file (missing parents made); it appears whole on
	// Close, replacing an old one with overwrite.
	Create(ctx context.Context, path string, overwrite bool) (io.WriteCloser, error)
	Delete(ctx context.Context, path string, recursive bool) error
	// Progress reports the bytes a task has done so far.
	Progress(ctx context.Context, bytesDone int64) error
}

// Holder returns the block worker caching most of f's bytes (0, "" when
// none caches any): a TaskSpec's place.
func Holder(f *File) (id int64, addr string) {
	// A file has few blocks and each few locations: a small slice, no
	// map, and only the winner's address formatted (this runs per file
	// listed: docs/profiles/plugin).
	type held struct {
		id    int64
		bytes int64
		at    *api.WorkerNetAddress
	}
	var buf [4]held
	hs := buf[:0]
	for _, b := range f.GetFileBlockInfos() {
		bi := b.GetBlockInfo()
		for _, l := range bi.GetLocations() {
			a := l.GetAddress()
			if a.GetHost() == "" {
				continue
			}
			i := 0
			for i < len(hs) && hs[i].id != l.GetWorkerId() {
				i++
			}
			if i == len(hs) {
				hs = append(hs, held{id: l.GetWorkerId()})
			}
			hs[i].bytes += max(bi.GetLength(), 1)
			hs[i].at = a
		}
	}
	var most int64
	var at *api.WorkerNetAddress
	for _, h := range hs {
		if h.bytes > most || h.bytes == most && h.id < id {
			id, most, at = h.id, h.bytes, h.at
		}
	}
	if at == nil {
		return id, ""
	}
	return id, at.GetHost() + ":" + strconv.Itoa(int(at.GetRpcPort())) // as the built-in plans write it
}

// ProfileEnv names a directory: a plugin process started with it set
// serves net/http/pprof on a loopback port (block and mutex profiles on)
// and writes that address to DIR/<pid>.pprof-addr. Plugins start with an
// empty environment, so set it in a wrapper script in plans.dir that execs
// the plugin (the plugin benchmark does: tests/bench PluginOverhead).
const ProfileEnv = "PLANPLUGIN_PPROF_DIR"

// serveProfiles serves pprof when ProfileEnv asks; a failure is only
// written to stderr (the host logs it): profiling is no reason to fail.
func serveProfiles() {
	dir := os.Getenv(ProfileEnv)
	if dir == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "planplugin: %s: %v\n", ProfileEnv, err)
		return
	}
	name := filepath.Join(dir, strconv.Itoa(os.Getpid())+".pprof-addr")
	if err := os.WriteFile(name, []byte(ln.Addr().String()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "planplugin: %s: %v\n", ProfileEnv, err)
		_ = ln.Close()
		return
	}
	runtime.SetBlockProfileRate(1)
	runtime.SetMutexProfileFraction(1)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.Serve(ln, mux) }()
}

// pluginGCPercent is the garbage collector's target in plugin processes.
const pluginGCPercent = 400

// Serve runs p as a plan plugin: call it from main. It returns when the
// job master or job worker that started the process is done with it. The
// process collects garbage at GOGC 400 (pluginGCPercent) unless GOGC is
// set: plugins start with an empty environment, so set it in a wrapper in
// plans.dir that execs the plugin.
func Serve(p Plan) {
	serveProfiles()
	if os.Getenv("GOGC") == "" {
		// A plugin process holds little and allocates much (a listing
		// page of a thousand files decoded per Plan call): with Go's
		// default its tiny heap is collected every page or two, a tenth
		// of its CPU (docs/profiles/plugin).
		debug.SetGCPercent(pluginGCPercent)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: p}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// GRPCPlugin is the go-plugin glue: Impl serves on the plugin's side; the
// host's side gets a *Conn.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plan
}

// Conn is a host's connection to a plugin process.
type Conn struct {
	Client api.PlanPluginClient
	Broker *plugin.GRPCBroker
}

// GRPCServer implements plugin.GRPCPlugin.
func (g *GRPCPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	api.RegisterPlanPluginServer(s, &server{impl: g.Impl, broker: b})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (g *GRPCPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Conn{Client: api.NewPlanPluginClient(c), Broker: b}, nil
}

// server serves Impl to the host.
type server struct {
	api.UnimplementedPlanPluginServer
	impl   Plan
	broker *plugin.GRPCBroker

	mu    sync.Mutex
	hosts map[uint32]api.PlanHostClient // by broker id: dialled once
}

// tokenOf is the call token ctx's metadata carries.
func tokenOf(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(CallHeader); len(v) == 1 {
			return v[0]
		}
	}
	return ""
}

// recvPool is the buffer pool of a plugin's connection to its host. gRPC's
// default pool clears each buffer it hands out, whole: a 1 MiB one for
// every listing page it reassembles, which it then overwrites with the
// page (a tenth of a planning process's CPU: docs/profiles/plugin). This
// one hands buffers out as they were put back, as gRPC's own transport
// does with the buffers it fills.
var recvPool mem.BufferPool = &dirtyPool{}

// dirtyPool keeps buffers in power-of-two classes from 4 KiB to 16 MiB
// (bigger ones are made and dropped), not cleared.
type dirtyPool struct{ classes [13]sync.Pool }

const dirtyMinShift, dirtyMaxShift = 12, 24

func dirtyClass(n int) int {
	c := 0
	for 1<<(dirtyMinShift+c) < n {
		c++
	}
	return c
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := dirtyClass(n)
	if dirtyMinShift+c > dirtyMaxShift {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(dirtyMinShift+c))
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := dirtyClass(cap(*b))
	if dirtyMinShift+c > dirtyMaxShift || cap(*b) != 1<<(dirtyMinShift+c) {
		return // not one of ours
	}
	p.classes[c].Put(b)
}

// host is the host of a call: the connection the host serves this process
// (dialled on its first call, then kept) and the call's token.
func (s *server) host(id uint32, token string) (*host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.hosts[id]
	if c == nil {
		conn, err := s.broker.DialWithOptions(id, experimental.WithBufferPool(recvPool))
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "plan plugin: connect to the host: %v", err)
		}
		if s.hosts == nil {
			s.hosts = map[uint32]api.PlanHostClient{}
		}
		c = api.NewPlanHostClient(conn)
		s.hosts[id] = c
	}
	return &host{c: c, token: token}, nil
}

func (s *server) Describe(_ context.Context, req *api.PluginDescribeRequest) (*api.PluginDescribeResponse, error) {
	if id := req.GetHostId(); id != 0 {
		// The host's offer of its PlanHost stands for 5 s only: take it now.
		if _, err := s.host(id, ""); err != nil {
			return nil, err
		}
	}
	i := s.impl.Info()
	return &api.PluginDescribeResponse{Name: i.Name, Version: i.Version, Description: i.Description}, nil
}

func (s *server) Validate(ctx context.Context, req *api.PluginValidateRequest) (*api.PluginValidateResponse, error) {
	h, err := s.host(req.GetHostId(), tokenOf(ctx))
	if err != nil {
		return nil, err
	}
	v, err := s.impl.Validate(ctx, h, req.GetConfig())
	if err != nil {
		return nil, asStatus(err)
	}
	resp := &api.PluginValidateResponse{Config: v.Config}
	if len(v.Workers) > 0 || len(v.ExcludeWorkers) > 0 || v.EndsWithTasks {
		resp.Limits = &api.JobLimits{Workers: v.Workers, ExcludeWorkers: v.ExcludeWorkers, EndsWithTasks: v.EndsWithTasks}
	}
	return resp, nil
}

func jobOf(j *api.PluginJob) Job {
	return Job{ID: j.GetId(), Config: j.GetConfig(), Cursor: j.GetCursor(), Round: j.GetRound(), RoundFailed: j.GetRoundFailed()}
}

func failedProto(fs []FailedPath) []*api.FailedPath {
	out := make([]*api.FailedPath, 0, len(fs))
	for _, f := range fs {
		out = append(out, &api.FailedPath{Path: f.Path, Error: f.Error})
	}
	return out
}

func (s *server) Plan(ctx context.Context, req *api.PluginPlanRequest) (*api.PluginPlanResponse, error) {
	h, err := s.host(req.GetHostId(), tokenOf(ctx))
	if err != nil {
		return nil, err
	}
	b, err := s.impl.Plan(ctx, h, jobOf(req.GetJob()), max(int(req.GetMax()), 1))
	if err != nil {
		return nil, asStatus(err)
	}
	resp := &api.PluginPlanResponse{Cursor: b.Cursor, Done: b.Done, Failed: failedProto(b.Failed)}
	for _, t := range b.Tasks {
		resp.Tasks = append(resp.Tasks, &api.PluginTask{Args: t.Args, Description: t.Description, Bytes: t.Bytes,
			BlockWorkerId: t.BlockWorkerID, BlockWorkerAddress: t.BlockWorkerAddress})
	}
	return resp, nil
}

// run runs one task.
func (s *server) run(ctx context.Context, h Host, req *api.PluginRunRequest) (*api.PluginRunResponse, error) {
	r, err := s.impl.Run(ctx, h, Task{JobID: req.GetJobId(), TaskID: req.GetTaskId(), Attempt: req.GetAttempt(),
		Args: req.GetArgs(), Config: req.GetConfig(), LocalBlockWorker: req.GetLocalBlockWorker()})
	return &api.PluginRunResponse{Bytes: r.Bytes, Failed: failedProto(r.Failed), Output: r.Output}, err
}

// RunTasks runs the tasks the stream brings, each in a goroutine of its
// own with a context of its own (a cancel message ends it), and answers
// each as it ends. When the host goes (the stream breaks) every task's
// context ends.
func (s *server) RunTasks(st api.PlanPlugin_RunTasksServer) error {
	ctx := st.Context()
	var (
		sendMu  sync.Mutex
		mu      sync.Mutex
		cancels = map[uint32]context.CancelFunc{}
		wg      sync.WaitGroup
	)
	fail := func(err error) error { // every task's context ends
		mu.Lock()
		for _, c := range cancels {
			c()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
	for {
		in, err := st.Recv()
		if errors.Is(err, io.EOF) {
			wg.Wait() // the host closes its side once every task has answered
			return nil
		}
		if err != nil {
			return fail(err)
		}
		seq := in.GetSeq()
		if in.GetCancel() {
			mu.Lock()
			if c := cancels[seq]; c != nil {
				c()
			}
			mu.Unlock()
			continue
		}
		req := in.GetRun()
		if req == nil {
			continue
		}
		h, err := s.host(req.GetHostId(), req.GetToken())
		if err != nil {
			// No way to the host: the stream fails, and the host drops
			// this process and retries its tasks.
			return fail(err)
		}
		tctx, cancel := context.WithCancel(ctx)
		mu.Lock()
		cancels[seq] = cancel
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.run(tctx, h, req)
			mu.Lock()
			delete(cancels, seq)
			mu.Unlock()
			cancel()
			sendMu.Lock()
			_ = st.Send(taskOut(seq, resp, err)) // a broken stream: the host has gone, or fails the task itself
			sendMu.Unlock()
		}()
	}
}

// taskOut is a task's answer: its result, also of a failed attempt (the
// host keeps the failed paths and output of a failed attempt too), and
// the error's code and message (a wrapped status error keeps its code and
// its whole message).
func taskOut(seq uint32, resp *api.PluginRunResponse, err error) *api.PluginTaskOut {
	out := &api.PluginTaskOut{Seq: seq, Result: resp}
	if err != nil {
		e := status.Convert(asStatus(err))
		out.Code, out.Error = uint32(e.Code()), e.Message()
	}
	return out
}

func (s *server) Done(ctx context.Context, req *api.PluginDoneRequest) (*api.PluginDoneResponse, error) {
	h, err := s.host(req.GetHostId(), tokenOf(ctx))
	if err != nil {
		return nil, err
	}
	d, err := s.impl.Done(ctx, h, jobOf(req.GetJob()))
	if err != nil {
		return nil, asStatus(err)
	}
	return &api.PluginDoneResponse{Done: d}, nil
}

// asStatus keeps a status error's code and gives any other error one.
func asStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// host is Host for one call: the process's connection to the host, and
// the call's token on every request.
type host struct {
	c     api.PlanHostClient
	token string
}

// out is ctx with the call's token for the host.
func (h *host) out(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, CallHeader, h.token)
}

func (h *host) Stat(ctx context.Context, path string) (*File, error) {
	ctx = h.out(ctx)
	r, err := h.c.Stat(ctx, &api.HostStatRequest{Path: path})
	if err != nil {
		return nil, err
	}
	return r.GetInfo(), nil
}

func (h *host) List(ctx context.Context, path, token string, size int, recursive bool) ([]*File, string, error) {
	ctx = h.out(ctx)
	r, err := h.c.List(ctx, &api.HostListRequest{Path: path, PageToken: token, PageSize: int32(size), Recursive: recursive})
	if err != nil {
		return nil, "", err
	}
	var page api.ListStatusResponse
	if err := proto.Unmarshal(r.GetListing(), &page); err != nil {
		return nil, "", status.Errorf(codes.Internal, "plan plugin: the host's listing of %s: %v", path, err)
	}
	return page.GetInfos(), page.GetNextPageToken(), nil
}

func (h *host) CheckAccess(ctx context.Context, path string, bits uint32, recursive bool) error {
	ctx = h.out(ctx)
	_, err := h.c.CheckAccess(ctx, &api.HostAccessRequest{Path: path, Bits: bits, Recursive: recursive})
	return err
}

func (h *host) Delete(ctx context.Context, path string, recursive bool) error {
	ctx = h.out(ctx)
	_, err := h.c.Delete(ctx, &api.HostDeleteRequest{Path: path, Recursive: recursive})
	return err
}

func (h *host) Progress(ctx context.Context, n int64) error {
	ctx = h.out(ctx)
	_, err := h.c.Progress(ctx, &api.HostProgressRequest{BytesDone: n})
	return err
}

func (h *host) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	ctx = h.out(ctx)
	ctx, cancel := context.WithCancel(ctx)
	s, err := h.c.ReadFile(ctx, &api.HostReadRequest{Path: path})
	if err != nil {
		cancel()
		return nil, err
	}
	// The first message says whether the file opened.
	first, err := s.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		cancel()
		return nil, err
	}
	r := &reader{s: s, cancel: cancel, eof: errors.Is(err, io.EOF)}
	if first != nil {
		r.buf = first.GetChunk()
	}
	return r, nil
}

type reader struct {
	s      api.PlanHost_ReadFileClient
	cancel context.CancelFunc
	buf    []byte
	eof    bool
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		m, err := r.s.Recv()
		if errors.Is(err, io.EOF) {
			r.eof = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		r.buf = m.GetChunk()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *reader) Close() error { r.cancel(); return nil }

func (h *host) Create(ctx context.Context, path string, overwrite bool) (io.WriteCloser, error) {
	ctx = h.out(ctx)
	s, err := h.c.WriteFile(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Send(&api.HostWriteRequest{Path: path, Overwrite: overwrite}); err != nil {
		_, err = s.CloseAndRecv()
		return nil, err
	}
	return &writer{s: s}, nil
}

// writeChunk is the most one message carries.
const writeChunk = 1 << 20

type writer struct {
	s      api.PlanHost_WriteFileClient
	closed bool
}

func (w *writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), writeChunk)]
		if err := w.s.Send(&api.HostWriteRequest{Chunk: c}); err != nil {
			_, err = w.s.CloseAndRecv()
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

func (w *writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	_, err := w.s.CloseAndRecv()
	return err
}
