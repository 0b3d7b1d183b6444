package plugin

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/sdk/planplugin"
)

// noopDir holds the noop plugin built for the package's tests; TestMain
// removes it (it outlives a test or a benchmark round: the plan's pool
// restarts processes from it).
var noopDir string

func TestMain(m *testing.M) {
	code := m.Run()
	Shutdown() // before its executable goes
	if noopDir != "" {
		_ = os.RemoveAll(noopDir)
	}
	os.Exit(code)
}

// buildNoop builds testdata/noop, a plugin that does nothing.
func buildNoop(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "alluvium-noop-plugin-")
	if err != nil {
		tb.Fatal(err)
	}
	noopDir = dir
	out := filepath.Join(dir, "noop")
	if b, err := exec.Command("go", "build", "-o", out, "./testdata/noop").CombinedOutput(); err != nil {
		tb.Fatalf("go build testdata/noop: %v\n%s", err, b)
	}
	return out
}

var (
	noopOnce sync.Once
	noopPlan *Plan
	noopErr  error
)

// loadNoop loads testdata/noop once for the package's tests and
// benchmarks (a plan's name loads once per process); each test's idle
// processes are killed at its end.
func loadNoop(tb testing.TB) *Plan {
	tb.Helper()
	noopOnce.Do(func() { noopPlan, noopErr = load(buildNoop(tb), nil) })
	if noopErr != nil {
		tb.Fatal(noopErr)
	}
	p := noopPlan
	tb.Cleanup(func() { killAll(p) }) // its processes outlive the test otherwise
	return p
}

// killAll kills p's idle processes and its task runner.
func killAll(p *Plan) {
	p.mu.Lock()
	insts := p.idle
	if p.runner != nil {
		insts = append(insts, p.runner)
	}
	p.idle, p.runner = nil, nil
	p.mu.Unlock()
	for _, i := range insts {
		i.kill() // takes p.mu to forget i
	}
}

// TestLoadAndRun: a plugin loads under its own name and version, runs a
// task, and a killed process is replaced on the next call.
func TestLoadAndRun(t *testing.T) {
	p := loadNoop(t)
	if i := plans.InfoOf(p); i.Name != "noop-bench" || i.Version != "1" || i.Origin != plans.OriginPlugin {
		t.Fatalf("info %+v", i)
	}
	if _, err := p.Run(context.Background(), nil, &plans.Task{JobID: 1, TaskID: 1}); err != nil {
		t.Fatal(err)
	}
	pids := p.PIDs()
	if len(pids) != 1 {
		t.Fatalf("idle processes %v, want 1", pids)
	}
	killAll(p)
	if _, err := p.Run(context.Background(), nil, &plans.Task{JobID: 1, TaskID: 2}); err != nil {
		t.Fatalf("run after the process was killed: %v", err)
	}
	if got := p.PIDs(); len(got) != 1 || got[0] == pids[0] {
		t.Fatalf("idle processes %v after a kill of %v: want a new one", got, pids)
	}
}

// TestShutdownLeavesNoSockets: a process that ends with its plugins
// running (idle, or taken for a call) leaves none of their Unix sockets
// behind, the plugins' own or their hosts', and starts no more; nor does
// a plugin process killed -9.
func TestShutdownLeavesNoSockets(t *testing.T) {
	loadNoop(t) // builds it
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // both sides make their sockets there
	p := &Plan{path: filepath.Join(noopDir, "noop"), log: zap.NewNop()}
	idle, err := p.start()
	if err != nil {
		t.Fatal(err)
	}
	p.put(idle)
	busy, err := p.start() // as if in a call
	if err != nil {
		t.Fatal(err)
	}
	killed, err := p.start() // to be killed -9, as a call finds it
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.UnixSockets(t, tmp); n < 6 {
		t.Fatalf("%d sockets under TMPDIR %s with three plugin processes running: want each one's and its host's", n, tmp)
	}
	if err := syscall.Kill(killed.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for !killed.c.Exited() {
		time.Sleep(10 * time.Millisecond) // polls an event: the process's exit
	}
	killed.kill()
	p.shutdown()
	if !idle.c.Exited() || !busy.c.Exited() {
		t.Fatalf("processes left running: idle exited %v, busy exited %v", idle.c.Exited(), busy.c.Exited())
	}
	if n := testutil.UnixSockets(t, tmp); n != 0 {
		t.Fatalf("%d sockets left under %s after shutdown", n, tmp)
	}
	if _, err := p.get(); err == nil {
		t.Fatal("a process started after shutdown")
	}
}

// A process that waits in the pool longer than go-plugin's broker keeps
// an offer of a connection (5 s) still reaches its host: it took the
// offer when it started.
func TestIdleProcessReachesItsHost(t *testing.T) {
	p := loadNoop(t)
	bg := context.Background()
	if _, err := p.Run(bg, nil, &plans.Task{JobID: 3, TaskID: 1}); err != nil {
		t.Fatal(err)
	}
	killAll(p)
	inst, err := p.start()
	if err != nil {
		t.Fatal(err)
	}
	p.put(inst)
	time.Sleep(6 * time.Second) // past the broker's 5 s: not a wait for an event
	if _, err := p.Run(bg, nil, &plans.Task{JobID: 3, TaskID: 2, Args: []byte("progress")}); err != nil {
		t.Fatalf("a task calling its host after the process idled: %v", err)
	}
	if got := p.PIDs(); len(got) != 1 || got[0] != inst.pid {
		t.Fatalf("idle processes %v, want the same %d", got, inst.pid)
	}
}

// BenchmarkRunOverhead is what running a task through a plugin costs over
// a call in the process: taking a process, a RunTasks stream, the round
// trip. (The reference, a built-in no-op, costs nanoseconds; the figure
// is the per-task overhead.)
func BenchmarkRunOverhead(b *testing.B) {
	p := loadNoop(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Run(ctx, nil, &plans.Task{JobID: 1, TaskID: int64(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunBatchOverhead is the same per task when a job worker hands
// the plugin 8 tasks at once (its threads' worth).
func BenchmarkRunBatchOverhead(b *testing.B) {
	p := loadNoop(b)
	ctx := context.Background()
	const size = 8
	b.ResetTimer()
	for i := 0; i < b.N; i += size {
		batch := make([]plans.BatchTask, size)
		for k := range batch {
			batch[k] = plans.BatchTask{Ctx: ctx, Task: &plans.Task{JobID: 1, TaskID: int64(i + k)}}
		}
		p.RunBatch(ctx, nil, batch, func(_ int, _ plans.Result, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
}

// answers collects a batch's answers: each task must be answered once.
type answers struct {
	mu  sync.Mutex
	res map[int]plans.Result
	err map[int]error
	dup []int
}

func (a *answers) done(i int, r plans.Result, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.res[i]; ok {
		a.dup = append(a.dup, i)
	}
	a.res[i], a.err[i] = r, err
}

func runBatch(p *Plan, ts []plans.BatchTask) *answers {
	a, returned := startBatch(p, ts)
	<-returned
	return a
}

// startBatch runs ts as a batch in the background; returned is closed
// when RunBatch returns.
func startBatch(p *Plan, ts []plans.BatchTask) (*answers, <-chan struct{}) {
	a := &answers{res: map[int]plans.Result{}, err: map[int]error{}}
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		p.RunBatch(context.Background(), nil, ts, a.done)
	}()
	return a, returned
}

// waitFor polls cond until it holds (a generous deadline: the machine may
// be loaded).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A batch's tasks are answered each on its own: results and a failed
// task's result and code; a task cancelled mid-batch is answered Canceled
// while the others complete, and the process, once the plugin has ended
// the cancelled task, goes back to the pool (not killed).
func TestRunBatchAnswersEachTask(t *testing.T) {
	p := loadNoop(t)
	bg := context.Background()
	waitCtx, cancelWait := context.WithCancel(bg)
	ts := []plans.BatchTask{
		{Ctx: bg, Task: &plans.Task{JobID: 1, TaskID: 1, Args: []byte("a")}},
		{Ctx: waitCtx, Task: &plans.Task{JobID: 1, TaskID: 2, Args: []byte("wait")}},
		{Ctx: bg, Task: &plans.Task{JobID: 1, TaskID: 3, Args: []byte("fail")}},
		{Ctx: bg, Task: &plans.Task{JobID: 1, TaskID: 4, Args: []byte("bbb")}},
	}
	a, returned := startBatch(p, ts)
	// The others answer while task 2 waits; then it is cancelled.
	waitFor(t, "the batch's other tasks", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.res) == 3
	})
	cancelWait()
	<-returned
	if len(a.dup) > 0 || len(a.res) != 4 {
		t.Fatalf("answers %v (twice: %v), want one for each of 4", a.res, a.dup)
	}
	if a.err[0] != nil || string(a.res[0].Output) != "a" || a.res[0].Bytes != 1 || a.err[3] != nil || string(a.res[3].Output) != "bbb" {
		t.Errorf("tasks 1 and 4: %v %v, %v %v", a.res[0], a.err[0], a.res[3], a.err[3])
	}
	if !errors.Is(a.err[1], context.Canceled) {
		t.Errorf("the cancelled task: %v, want context.Canceled", a.err[1])
	}
	if st := status.Convert(a.err[2]); st.Code() != codes.DataLoss || !strings.Contains(st.Message(), "fail: as asked") || a.res[2].Bytes != 1 || string(a.res[2].Output) != `"failed"` {
		t.Errorf("the failed task: %v %+v, want DataLoss with its result", a.err[2], a.res[2])
	}
	waitFor(t, "the process back in the pool", func() bool { return len(p.PIDs()) == 1 })
}

// Batches under way at once share the task runner: one process, each
// batch on a stream of its own.
func TestBatchesShareTheRunner(t *testing.T) {
	p := loadNoop(t)
	bg := context.Background()
	if _, err := p.Run(bg, nil, &plans.Task{JobID: 4, TaskID: 1}); err != nil {
		t.Fatal(err)
	}
	pids := p.PIDs()
	ctx, cancel := context.WithCancel(bg)
	var wg sync.WaitGroup
	var started sync.WaitGroup
	for b := int64(0); b < 3; b++ {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			ts := []plans.BatchTask{{Ctx: ctx, Task: &plans.Task{JobID: 4, TaskID: 10 + b, Args: []byte("wait")}}}
			started.Done()
			runBatch(p, ts)
		}()
	}
	started.Wait()
	waitFor(t, "three tasks under way", func() bool {
		p.runner.host.mu.Lock()
		defer p.runner.host.mu.Unlock()
		return len(p.runner.host.calls) == 3
	})
	if got := p.PIDs(); len(got) != 1 || got[0] != pids[0] {
		t.Errorf("processes %v with three batches under way, want the runner %v alone", got, pids)
	}
	cancel()
	wg.Wait()
}

// A task of a batch that times out kills the process at once, whatever
// the plugin does (it hangs here); the batch's other tasks fail
// Unavailable (the job master retries them), and the next batch gets a
// new process.
func TestRunBatchTimeoutKills(t *testing.T) {
	p := loadNoop(t)
	bg := context.Background()
	if _, err := p.Run(bg, nil, &plans.Task{JobID: 2, TaskID: 1}); err != nil {
		t.Fatal(err)
	}
	pids := p.PIDs()
	if len(pids) != 1 {
		t.Fatalf("idle processes %v, want 1", pids)
	}
	hung, cancelHung := context.WithCancel(bg)
	defer cancelHung()
	timeout := &expiring{Context: bg, done: make(chan struct{})}
	ts := []plans.BatchTask{
		{Ctx: timeout, Task: &plans.Task{JobID: 2, TaskID: 2, Args: []byte("hang")}},
		{Ctx: hung, Task: &plans.Task{JobID: 2, TaskID: 3, Args: []byte("hang")}},
	}
	a, returned := startBatch(p, ts)
	close(timeout.done) // task 2's timeout passes
	<-returned
	if len(a.dup) > 0 || len(a.res) != 2 {
		t.Fatalf("answers %v (twice: %v)", a.err, a.dup)
	}
	if !errors.Is(a.err[0], context.DeadlineExceeded) {
		t.Errorf("the task timed out: %v, want DeadlineExceeded", a.err[0])
	}
	if status.Code(a.err[1]) != codes.Unavailable {
		t.Errorf("the other task: %v, want Unavailable", a.err[1])
	}
	waitFor(t, "the killed process to be gone", func() bool { return syscall.Kill(pids[0], 0) != nil })
	if _, err := p.Run(bg, nil, &plans.Task{JobID: 2, TaskID: 4}); err != nil {
		t.Fatalf("a task after the kill: %v", err)
	}
	if got := p.PIDs(); len(got) != 1 || got[0] == pids[0] {
		t.Fatalf("idle processes %v after the kill of %v: want a new one", got, pids)
	}
}

// expiring is a context whose deadline passes when done is closed (a
// task timeout without a clock).
type expiring struct {
	context.Context
	done chan struct{}
}

func (e *expiring) Done() <-chan struct{} { return e.done }

func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// Planning asks for the batch after each one ahead (while the job master
// commits it): the batches still come in order, each once, and a planner
// made at a cursor (a new leader) resumes right after it; Close abandons
// one planned ahead without killing its process.
func TestPlannerPlansAhead(t *testing.T) {
	p := loadNoop(t)
	ctx := context.Background()
	pl, err := p.NewPlanner(ctx, nil, plans.Job{ID: 1, Config: []byte("5")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var cursor []byte
	// Two Nexts of at most 2 tasks: at most 4 of the 5, however the
	// calls were gathered.
	for i := 0; i < 2; i++ {
		b, err := pl.Next(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Tasks) == 0 || len(b.Tasks) > 2 || b.Done {
			t.Fatalf("Next %d: %d tasks (done %v), want 1 or 2, not done", i, len(b.Tasks), b.Done)
		}
		for _, t := range b.Tasks {
			got = append(got, string(t.Args))
		}
		cursor = b.Cursor
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the abandoned call's process back in the pool", func() bool { return len(p.PIDs()) == 1 })
	pl, err = p.NewPlanner(ctx, nil, plans.Job{ID: 1, Config: []byte("5"), Cursor: cursor})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	for {
		b, err := pl.Next(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, t := range b.Tasks {
			got = append(got, string(t.Args))
		}
		if b.Done {
			break
		}
	}
	if strings.Join(got, ",") != "0,1,2,3,4" {
		t.Fatalf("tasks planned %v, want 0..4 once each in order", got)
	}
}

// A Next gathers the batches of several Plan calls while its budget lasts
// (here: for ever) and their tasks fit in max, so a job's plan takes a
// few raft entries, not one a call: a batch that would not fit waits for
// the next Next.
func TestPlannerGathersCalls(t *testing.T) {
	p := loadNoop(t)
	ctx := context.Background()
	pl, err := p.NewPlanner(ctx, nil, plans.Job{ID: 1, Config: []byte("10")})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	pl.(*planner).budget = func(int) time.Duration { return time.Hour }
	var got []string
	for _, want := range []string{"0,1,2,3", "4,5,6,7", "8,9"} {
		b, err := pl.Next(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, t := range b.Tasks {
			args = append(args, string(t.Args))
		}
		if strings.Join(args, ",") != want || b.Done != (want == "8,9") {
			t.Fatalf("Next: tasks %v (done %v), want %s", args, b.Done, want)
		}
		if n, _ := strconv.Atoi(string(b.Cursor)); n != len(got)+len(args) {
			t.Fatalf("cursor %q after %d tasks", b.Cursor, len(got)+len(args))
		}
		got = append(got, args...)
	}
}

// The host a process calls back answers only requests carrying the token
// of the call under way: none from a call that has ended, none without.
func TestHostServesOnlyTheCallUnderWay(t *testing.T) {
	h := &hostServer{}
	with := func(token string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(planplugin.CallHeader, token))
	}
	progress := int64(0)
	token, end := h.begin(context.Background(), nil, func(n int64) { progress = n })
	if _, err := h.Progress(with(token), &api.HostProgressRequest{BytesDone: 5}); err != nil || progress != 5 {
		t.Fatalf("progress of the call under way: %v (saw %d)", err, progress)
	}
	for name, ctx := range map[string]context.Context{"no token": context.Background(), "another token": with(token + "x")} {
		if _, err := h.Progress(ctx, &api.HostProgressRequest{BytesDone: 6}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	end()
	next, end2 := h.begin(context.Background(), nil, func(n int64) { progress = n })
	defer end2()
	if next == token {
		t.Fatal("two calls got one token")
	}
	if _, err := h.Progress(with(token), &api.HostProgressRequest{BytesDone: 7}); status.Code(err) != codes.PermissionDenied || progress != 5 {
		t.Errorf("a request of the ended call during the next: %v (progress %d), want PermissionDenied", err, progress)
	}
}
