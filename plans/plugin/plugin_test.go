package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/sdk/planplugin"
)

// buildNoop builds testdata/noop, a plugin that does nothing.
func buildNoop(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "alluvium-noop-plugin-") // outlives a benchmark round: its pool restarts from it
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, "noop")
	if b, err := exec.Command("go", "build", "-o", out, "./testdata/noop").CombinedOutput(); err != nil {
		tb.Fatalf("go build testdata/noop: %v\n%s", err, b)
	}
	return out
}

// TestLoadAndRun: a plugin loads under its own name and version, runs a
// task, and a killed process is replaced on the next call.
func TestLoadAndRun(t *testing.T) {
	p, err := load(buildNoop(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // its processes outlive the test otherwise
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, i := range p.idle {
			i.kill()
		}
		p.idle = nil
	})
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
	p.mu.Lock()
	p.idle[0].kill()
	p.mu.Unlock()
	if _, err := p.Run(context.Background(), nil, &plans.Task{JobID: 1, TaskID: 2}); err != nil {
		t.Fatalf("run after the process was killed: %v", err)
	}
	if got := p.PIDs(); len(got) != 1 || got[0] == pids[0] {
		t.Fatalf("idle processes %v after a kill of %v: want a new one", got, pids)
	}
}

var benchPlan *Plan

// BenchmarkRunOverhead is what running a task through a plugin costs over
// a call in the process: taking a process, serving its host on a broker
// stream, the gRPC round trip. (The reference, a built-in no-op, costs
// nanoseconds; the figure is the per-task overhead.)
func BenchmarkRunOverhead(b *testing.B) {
	// Rounds of the benchmark share one plugin (a plan name loads once).
	if benchPlan == nil {
		p, err := load(buildNoop(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		benchPlan = p
	}
	p := benchPlan
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Run(ctx, nil, &plans.Task{JobID: 1, TaskID: int64(i)}); err != nil {
			b.Fatal(err)
		}
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
