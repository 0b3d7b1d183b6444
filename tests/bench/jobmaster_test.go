package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/jobmaster"
	"github.com/alluvium/alluvium/jobworker"
	"github.com/alluvium/alluvium/plans"
)

// noopPlan makes {"tasks": N} tasks that do nothing: what is left is the
// job service's own cost per task (plan, hand out, run, report, commit).
type noopPlan struct{}

type noopConfig struct {
	Tasks int `json:"tasks"`
}

type noopPlanner struct{ n, next int }

func (noopPlan) Name() string { return "bench-noop" }
func (noopPlan) Validate(_ context.Context, _ plans.Env, c []byte) ([]byte, error) {
	var nc noopConfig
	if err := json.Unmarshal(c, &nc); err != nil {
		return nil, err
	}
	return c, nil
}
func (noopPlan) NewPlanner(_ context.Context, _ plans.Env, j plans.Job) (plans.Planner, error) {
	var nc noopConfig
	if err := json.Unmarshal(j.Config, &nc); err != nil {
		return nil, err
	}
	p := &noopPlanner{n: nc.Tasks}
	if len(j.Cursor) > 0 {
		_ = json.Unmarshal(j.Cursor, &p.next)
	}
	return p, nil
}
func (p *noopPlanner) Next(_ context.Context, max int) (plans.Batch, error) {
	var b plans.Batch
	for len(b.Tasks) < max && p.next < p.n {
		b.Tasks = append(b.Tasks, plans.TaskSpec{Args: []byte("{}"), Description: "noop"})
		p.next++
	}
	b.Cursor, _ = json.Marshal(p.next)
	b.Done = p.next >= p.n
	return b, nil
}
func (p *noopPlanner) Close() error { return nil }
func (noopPlan) Run(context.Context, plans.Env, *plans.Task) (plans.Result, error) {
	return plans.Result{}, nil
}
func (noopPlan) Done(context.Context, plans.Env, plans.Job) (bool, error) { return true, nil }

func freePort(b testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func benchConfig(b testing.TB) *config.Config {
	l := config.NewLoader()
	l.Set("home", b.TempDir())
	cfg, err := l.Load()
	if err != nil {
		b.Fatal(err)
	}
	cfg.Log.Level = "warn"
	jm := &cfg.JobMaster
	jm.Host, jm.BindHost = "127.0.0.1", "127.0.0.1"
	jm.RPCPort, jm.HTTPPort, jm.Raft.Port = freePort(b), freePort(b), freePort(b)
	jm.Raft.NodeID = ""
	jm.Raft.NodeID = fmt.Sprintf("127.0.0.1:%d", jm.Raft.Port)
	jm.Raft.HeartbeatTimeout = 200 * time.Millisecond
	jm.Raft.ElectionTimeout = 200 * time.Millisecond
	cfg.Worker.Host, cfg.Worker.BindHost = "127.0.0.1", "127.0.0.1"
	return cfg
}

// BenchmarkJobMasterTasks pushes trivial tasks through one job master
// (bbolt raft log with fsync) and four in-process job workers over gRPC.
func BenchmarkJobMasterTasks(b *testing.B) {
	plans.Register(noopPlan{})
	log := zap.NewNop()
	cfg := benchConfig(b)
	m, err := jobmaster.New(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Stop(context.Background())
	for deadline := time.Now().Add(10 * time.Second); !m.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
	}
	for i := 0; i < 4; i++ {
		wc := benchConfig(b)
		wc.JobWorker.JobMaster = m.RPCAddr()
		wc.JobWorker.Threads = 8
		wc.JobWorker.QueueDepth = 0
		wc.JobWorker.RPCPort = 0
		w, err := jobworker.New(wc, log, jobworker.Colocated{})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer w.Stop(context.Background())
	}
	cc, err := rpc.Dial(m.RPCAddr(), rpc.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	cl := api.NewJobMasterClient(cc)
	run := func(n int) time.Duration {
		start := time.Now()
		resp, err := cl.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: "bench-noop", ConfigJson: fmt.Sprintf(`{"tasks":%d}`, n)})
		if err != nil {
			b.Fatal(err)
		}
		st, err := cl.WatchJob(context.Background(), &api.WatchJobRequest{JobId: resp.JobId, MinIntervalMs: 20})
		if err != nil {
			b.Fatal(err)
		}
		var last *api.JobInfo
		for {
			j, err := st.Recv()
			if err != nil {
				break
			}
			last = j
		}
		if last == nil || last.Status != api.JobInfo_COMPLETED || last.TasksDone != int64(n) {
			b.Fatalf("job ended as %v", last)
		}
		return time.Since(start)
	}
	run(2000) // warm up connections
	const n = 200000
	s0 := m.Stats()
	b.ResetTimer()
	took := run(n)
	b.StopTimer()
	s1 := m.Stats()
	b.ReportMetric(float64(n)/took.Seconds(), "tasks/s")
	b.ReportMetric(float64(s1.LogEntries-s0.LogEntries)/float64(max(s1.LogWrites-s0.LogWrites, 1)), "raft-entries/fsync")
	b.ReportMetric(float64(s1.TaskUpdates-s0.TaskUpdates)/float64(max(s1.UpdateEntries-s0.UpdateEntries, 1)), "updates/raft-entry")
	b.ReportMetric(float64(s1.LogWrites-s0.LogWrites)/took.Seconds(), "fsyncs/s")
}
