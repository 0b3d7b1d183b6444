package jobmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/jobworker"
)

// Three nodes apply jobs; a job submitted through a follower runs to the
// end, and every replica ends with the same state.
func TestClusterThreeNodesApplyJobs(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	follower := (c.index(l) + 1) % 3
	c.addWorker(4)
	c.addWorker(4)
	cl := c.client(follower)
	var ids []int64
	for i := 0; i < 3; i++ {
		ids = append(ids, submitTest(t, cl, testConfig{Tasks: 40, Tag: t.Name()}, fmt.Sprintf("r%d", i)))
	}
	for _, id := range ids {
		j := waitJob(t, cl, id, 20*time.Second)
		if j.Status != api.JobInfo_COMPLETED || j.TasksDone != 40 || j.TasksTotal != 40 {
			t.Fatalf("job %d: %v", id, j)
		}
	}
	// Replicas converge on the same state.
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, b, d := dump(c.servers[0].fsm), dump(c.servers[1].fsm), dump(c.servers[2].fsm)
		if a == b && b == d {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas differ:\n%s\n---\n%s\n---\n%s", a, b, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The leader dies while a job is planned and run: a new leader is elected,
// resumes planning at the committed cursor (no task planned twice, none
// missed) and the job completes.
func TestClusterLeaderLossResumesJob(t *testing.T) {
	c := newCluster(t, 3, func(cfg *config.Config) { cfg.JobMaster.Planner.BatchSize = 10 })
	l := c.leader()
	c.addWorker(4)
	c.addWorker(4)
	tag := uniqueTag(t)
	id := submitTest(t, c.client(c.index(l)), testConfig{Tasks: 300, SleepMs: 5, Tag: tag}, "once")
	// Let it get going, then kill the leader.
	deadline := time.Now().Add(10 * time.Second)
	for runsOf(tag).finished.Load() < 30 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	old := c.index(l)
	c.kill(old)
	nl := c.leader()
	if c.index(nl) == old {
		t.Fatal("dead node still leads")
	}
	j := waitJob(t, c.client(c.index(nl)), id, 30*time.Second)
	if j.Status != api.JobInfo_COMPLETED || j.TasksTotal != 300 || j.TasksDone != 300 {
		t.Fatalf("after failover: %v", j)
	}
	log := runsOf(tag)
	log.mu.Lock()
	defer log.mu.Unlock()
	for i := 0; i < 300; i++ {
		if log.seen[fmt.Sprintf("%d/%d", id, i)] == 0 {
			t.Fatalf("task %d never ran", i)
		}
	}
}

// Cancel stops running tasks (their contexts are cancelled on the workers)
// and the job is CANCELED within a second.
func TestCancelStopsRunningTasks(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	c.addWorker(3)
	tag := uniqueTag(t)
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 10, Block: true, Tag: tag}, "")
	log := runsOf(tag)
	deadline := time.Now().Add(10 * time.Second)
	for log.started.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("tasks did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if _, err := cl.CancelJob(context.Background(), &api.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cl, id, 30*time.Second)
	if j.Status != api.JobInfo_CANCELED {
		t.Fatalf("job after cancel: %v", j)
	}
	for log.canceled.Load() < 3 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("only %d of 3 running tasks saw their context cancelled", log.canceled.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Cancelling again is fine; a finished job cannot be cancelled.
	if _, err := cl.CancelJob(context.Background(), &api.CancelJobRequest{JobId: id}); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	done := submitTest(t, cl, testConfig{Tasks: 1, Tag: tag}, "")
	waitJob(t, cl, done, 30*time.Second)
	if _, err := cl.CancelJob(context.Background(), &api.CancelJobRequest{JobId: done}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel of a completed job: %v", err)
	}
	if _, err := cl.CancelJob(context.Background(), &api.CancelJobRequest{JobId: 999}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
}

// A job worker that goes silent is LOST after jobmaster.worker.timeout; its
// tasks run again elsewhere with attempt+1.
func TestLostWorkerTasksRunElsewhere(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	tag := uniqueTag(t)
	w1 := c.addWorker(4)
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 4, Block: true, Tag: tag}, "")
	log := runsOf(tag)
	deadline := time.Now().Add(10 * time.Second)
	for log.started.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatal("tasks did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// w1 stops without a word; the blocked tasks die with it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = w1.Stop(ctx)
	// Let the replacement complete instead of blocking.
	c.addWorker(4)
	var j *api.JobInfo
	deadline = time.Now().Add(15 * time.Second)
	for {
		resp, err := cl.GetJob(context.Background(), &api.GetJobRequest{JobId: id, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		j = resp.Job
		retried := 0
		for _, tk := range j.Tasks {
			if tk.Attempt == 2 && tk.Status == api.TaskInfo_RUNNING {
				retried++
			}
		}
		if retried == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks not retried on the new worker: %v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	workers, err := cl.ListJobWorkers(context.Background(), &api.ListJobWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(workers.Workers) != 2 || workers.Workers[0].State != api.WorkerState_LOST || workers.Workers[1].State != api.WorkerState_LIVE {
		t.Fatalf("workers: %v", workers.Workers)
	}
	_, _ = cl.CancelJob(context.Background(), &api.CancelJobRequest{JobId: id})
}

// After jobmaster.task.max-attempts the task FAILS and the job lists the
// failed paths; task timeouts count as failures.
func TestFailedTasksFailJobWithPaths(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) {
		cfg.JobMaster.Task.MaxAttempts = 2
		cfg.JobMaster.Task.Timeout = 300 * time.Millisecond
	})
	c.leader()
	c.addWorker(4)
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 6, Fail: []int{2, 4}, Tag: t.Name()}, "")
	j := waitJob(t, cl, id, 10*time.Second)
	if j.Status != api.JobInfo_FAILED || j.TasksDone != 4 || j.TasksFailed != 2 {
		t.Fatalf("job: %v", j)
	}
	paths := map[string]string{}
	for _, f := range j.Failed {
		paths[f.Path] = f.Error
	}
	if paths["/t/2"] != "no such block" || paths["/t/4"] != "no such block" || !strings.Contains(j.Error, "2 task(s)") {
		t.Fatalf("failed paths %v, error %q", j.Failed, j.Error)
	}
	// Tasks that only fail their first attempt succeed on the second.
	id = submitTest(t, cl, testConfig{Tasks: 5, FailFirst: 1, Tag: t.Name()}, "")
	if j = waitJob(t, cl, id, 10*time.Second); j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("retried job: %v", j)
	}
	// A task that never ends is timed out by the worker, twice: FAILED.
	id = submitTest(t, cl, testConfig{Tasks: 1, Block: true, Tag: t.Name()}, "")
	j = waitJob(t, cl, id, 10*time.Second)
	if j.Status != api.JobInfo_FAILED || len(j.Failed) != 1 || !strings.Contains(j.Failed[0].Error, "timed out") {
		t.Fatalf("timed-out job: %v", j)
	}
}

// The same submit twice with one request id gives one job; bad input is
// refused with a clear error and submits nothing.
func TestSubmitIdempotentAndBadInput(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	cl := c.client((c.index(l) + 1) % 3)
	ctx := context.Background()
	req := &api.SubmitJobRequest{Plan: "test", ConfigJson: `{"tasks":0}`, RequestId: "req-1"}
	a, err := cl.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if a.JobId != b.JobId || a.Existed || !b.Existed {
		t.Fatalf("two submits with one request id: %v then %v", a, b)
	}
	for _, bad := range []struct {
		req  *api.SubmitJobRequest
		code codes.Code
		want string
	}{
		{&api.SubmitJobRequest{Plan: "nosuch", ConfigJson: `{}`}, codes.InvalidArgument, `unknown plan "nosuch"`},
		{&api.SubmitJobRequest{Plan: "test", ConfigJson: `{"tasks": `}, codes.InvalidArgument, "not valid JSON"},
		{&api.SubmitJobRequest{Plan: "test", ConfigJson: ``}, codes.InvalidArgument, "empty config"},
		{&api.SubmitJobRequest{Plan: "load", ConfigJson: `{"path":"/x","replication":0,"bogus":1}`}, codes.InvalidArgument, "unknown field"},
		{&api.SubmitJobRequest{Plan: "load", ConfigJson: `{"path":"rel"}`}, codes.InvalidArgument, "not absolute"},
	} {
		_, err := cl.SubmitJob(ctx, bad.req)
		if status.Code(err) != bad.code || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("submit %v: got %v, want %s containing %q", bad.req, err, bad.code, bad.want)
		}
	}
	list, err := cl.ListJobs(ctx, &api.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 1 {
		t.Fatalf("%d jobs after one good submit and bad ones", len(list.Jobs))
	}
}

// A small job runs to COMPLETED and its watch stream ends with it. (How
// fast is a benchmark's question: BenchmarkJobMasterTasks' small-job-ms.)
func TestSmallJobCompletesWatched(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	c.addWorker(4)
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 8, Tag: t.Name()}, "")
	stream, err := cl.WatchJob(context.Background(), &api.WatchJobRequest{JobId: id, MinIntervalMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	var last *api.JobInfo
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	if last.Status != api.JobInfo_COMPLETED || last.TasksDone != 8 {
		t.Fatalf("watch ended with %v", last)
	}
}

// A watch that carries a submit submits the job and follows it in one call,
// through a follower too; opened again with the same request id (a client
// whose stream was lost) it follows the same job instead of making a second;
// a bad submit is refused on the stream and makes nothing.
func TestSubmitWatchOneCall(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	c.addWorker(4)
	cl := c.client((c.index(l) + 1) % 3)
	cfg, _ := json.Marshal(testConfig{Tasks: 8, Tag: t.Name()})
	req := &api.SubmitJobRequest{Plan: "test", ConfigJson: string(cfg), RequestId: "one-call"}
	// run opens the stream (again while the follower knows no leader yet)
	// and reads it to its end.
	finalOnly := false
	run := func(req *api.SubmitJobRequest) ([]*api.JobInfo, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var got []*api.JobInfo
			stream, err := cl.WatchJob(context.Background(), &api.WatchJobRequest{Submit: req, MinIntervalMs: 1, FinalOnly: finalOnly})
			for err == nil {
				var m *api.JobInfo
				if m, err = stream.Recv(); err == nil {
					got = append(got, m)
				}
			}
			if err == io.EOF {
				return got, nil
			}
			if status.Code(err) != codes.Unavailable || len(got) > 0 || time.Now().After(deadline) {
				return got, err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	got, err := run(req)
	if err != nil {
		t.Fatal(err)
	}
	last := got[len(got)-1]
	if last.Status != api.JobInfo_COMPLETED || last.TasksDone != 8 || last.Id == 0 {
		t.Fatalf("submit-watch ended with %v", last)
	}
	for _, m := range got {
		if m.Id != last.Id {
			t.Fatalf("states of jobs %d and %d on one stream", m.Id, last.Id)
		}
	}
	again, err := run(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || again[0].Id != last.Id || again[0].Status != api.JobInfo_COMPLETED {
		t.Fatalf("the same request id again: %v, want job %d COMPLETED alone", again, last.Id)
	}
	if _, err := run(&api.SubmitJobRequest{Plan: "test", ConfigJson: `{"tasks": `, RequestId: "bad"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad config: %v, want InvalidArgument", err)
	}
	// final_only: the end alone, for a job that takes a while (its tasks
	// take 200 ms each) and for one already ended (the same request id).
	finalOnly = true
	blocked, _ := json.Marshal(testConfig{Tasks: 4, SleepMs: 200, Tag: t.Name()})
	for _, rid := range []string{"final-only", "final-only"} {
		got, err := run(&api.SubmitJobRequest{Plan: "test", ConfigJson: string(blocked), RequestId: rid})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Status != api.JobInfo_COMPLETED || got[0].TasksDone != 4 {
			t.Fatalf("final_only sent %v, want the COMPLETED state alone", got)
		}
	}
	list, err := cl.ListJobs(context.Background(), &api.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 2 {
		t.Fatalf("%d jobs after two submit-watches sent twice each and a bad one, want 2", len(list.Jobs))
	}
}

// Listing newest first pages down from the newest job; the count, the
// submitter and the finished-after filters agree with what was submitted.
func TestListJobsNewestFirstAndCount(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	c.addWorker(2)
	cl := c.client(0)
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, submitTest(t, cl, testConfig{Tasks: 0, Tag: t.Name()}, ""))
	}
	blocked := submitTest(t, cl, testConfig{Tasks: 1, Block: true, Tag: t.Name()}, "")
	for _, id := range ids {
		waitJob(t, cl, id, 30*time.Second)
	}
	ctx := context.Background()
	var got []int64
	tok := ""
	for {
		resp, err := cl.ListJobs(ctx, &api.ListJobsRequest{PageSize: 2, PageToken: tok, NewestFirst: true, CountTotal: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Total != 6 {
			t.Fatalf("total %d, want 6", resp.Total)
		}
		for _, j := range resp.Jobs {
			got = append(got, j.Id)
		}
		if tok = resp.NextPageToken; tok == "" {
			break
		}
	}
	want := []int64{blocked, ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("newest first: %v, want %v", got, want)
	}
	resp, err := cl.ListJobs(ctx, &api.ListJobsRequest{Statuses: []api.JobInfo_Status{api.JobInfo_COMPLETED}, NewestFirst: true, PageSize: 1, CountTotal: true})
	if err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].Id != ids[4] || resp.Total != 5 || resp.NextPageToken != fmt.Sprint(ids[4]) {
		t.Fatalf("newest completed: %v %v", resp, err)
	}
	sub := resp.Jobs[0].Submitter
	if resp, err = cl.ListJobs(ctx, &api.ListJobsRequest{Submitter: sub, CountTotal: true}); err != nil || resp.Total != 6 {
		t.Fatalf("jobs of %q: %v %v", sub, resp, err)
	}
	if resp, err = cl.ListJobs(ctx, &api.ListJobsRequest{Submitter: "nobody", CountTotal: true}); err != nil || resp.Total != 0 || len(resp.Jobs) != 0 {
		t.Fatalf("jobs of nobody: %v %v", resp, err)
	}
	// The running job has not finished: a finished-after filter leaves it out.
	if resp, err = cl.ListJobs(ctx, &api.ListJobsRequest{FinishedAfterMs: 1, CountTotal: true}); err != nil || resp.Total != 5 {
		t.Fatalf("finished jobs: %v %v", resp, err)
	}
	if resp, err = cl.ListJobs(ctx, &api.ListJobsRequest{FinishedAfterMs: time.Now().Add(time.Hour).UnixMilli(), CountTotal: true}); err != nil || resp.Total != 0 {
		t.Fatalf("jobs finished in the future: %v %v", resp, err)
	}
	// The blocked task shows on the worker running it, once dispatched.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, err := cl.ListJobWorkers(ctx, &api.ListJobWorkersRequest{IncludeTasks: true})
		if err != nil {
			t.Fatal(err)
		}
		var tasks []*api.TaskInfo
		for _, w := range ws.Workers {
			tasks = append(tasks, w.Tasks...)
		}
		if len(tasks) == 1 && tasks[0].JobId == blocked && tasks[0].Status == api.TaskInfo_RUNNING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers' running tasks: %v", tasks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listing filters by status and plan and pages.
func TestListJobsFiltersAndPages(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	cl := c.client(0)
	for i := 0; i < 7; i++ {
		submitTest(t, cl, testConfig{Tasks: 0, Tag: t.Name()}, "")
	}
	blocked := submitTest(t, cl, testConfig{Tasks: 1, Block: true, Tag: t.Name()}, "")
	for i := int64(1); i <= 7; i++ {
		waitJob(t, cl, i, 30*time.Second)
	}
	ctx := context.Background()
	var all []*api.JobInfo
	tok := ""
	pages := 0
	for {
		resp, err := cl.ListJobs(ctx, &api.ListJobsRequest{PageSize: 3, PageToken: tok, Statuses: []api.JobInfo_Status{api.JobInfo_COMPLETED}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, resp.Jobs...)
		pages++
		if tok = resp.NextPageToken; tok == "" {
			break
		}
	}
	if len(all) != 7 || pages != 3 {
		t.Fatalf("%d completed jobs in %d pages, want 7 in 3", len(all), pages)
	}
	resp, err := cl.ListJobs(ctx, &api.ListJobsRequest{Statuses: []api.JobInfo_Status{api.JobInfo_RUNNING, api.JobInfo_CREATED}})
	if err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].Id != blocked {
		t.Fatalf("running jobs: %v %v", resp, err)
	}
	if resp, err = cl.ListJobs(ctx, &api.ListJobsRequest{Plan: "load"}); err != nil || len(resp.Jobs) != 0 {
		t.Fatalf("load jobs: %v %v", resp, err)
	}
	if _, err = cl.ListJobs(ctx, &api.ListJobsRequest{PageToken: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad token: %v", err)
	}
	// The HTTP API says the same, as JSON.
	s := c.servers[0]
	r, err := http.Get("http://" + s.HTTPAddr() + "/api/v1/jobs?status=completed&pageSize=2")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Jobs          []jobview.Job `json:"jobs"`
		NextPageToken string        `json:"nextPageToken"`
	}
	if err := json.NewDecoder(r.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if len(page.Jobs) != 2 || page.Jobs[0].Status != "COMPLETED" || page.NextPageToken == "" {
		t.Fatalf("http list: %+v", page)
	}
	r, err = http.Get(fmt.Sprintf("http://%s/api/v1/jobs/%d?verbose=true", s.HTTPAddr(), blocked))
	if err != nil {
		t.Fatal(err)
	}
	var one jobview.Job
	if err := json.NewDecoder(r.Body).Decode(&one); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if one.ID != blocked || one.Plan != "test" || one.Status != "RUNNING" && one.Status != "CREATED" || one.TasksTotal != 1 {
		t.Fatalf("http job: %+v", one)
	}
	r, err = http.Get("http://" + s.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	for _, m := range []string{`alluvium_jobmaster_jobs{status="COMPLETED"} 7`, "alluvium_jobmaster_raft_apply_seconds", "alluvium_jobmaster_queue_depth", "alluvium_jobmaster_tasks_per_second"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	_, _ = cl.CancelJob(ctx, &api.CancelJobRequest{JobId: blocked})
}

// Task updates from many workers share raft entries.
func TestTaskUpdatesAreBatched(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) { cfg.JobMaster.Planner.BatchSize = 1000 })
	c.leader()
	for i := 0; i < 4; i++ {
		c.addWorker(8)
	}
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 4000, Tag: t.Name()}, "")
	if j := waitJob(t, cl, id, 60*time.Second); j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("job %v", j)
	}
	s := c.servers[0]
	updates, entries := counterOf(s.m.updates), counterOf(s.m.entries)
	t.Logf("%v task updates in %v raft entries (%.1f per entry)", updates, entries, updates/entries)
	// 4000 tasks = 4000 dispatches + 4000 results, at least.
	if updates < 8000 || updates/entries < 4 {
		t.Fatalf("%v updates in %v entries: not batched", updates, entries)
	}
}

// GC compacts finished jobs beyond the retention.
func TestGCRemovesOldFinishedJobs(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) {
		cfg.JobMaster.Job.Retention = 200 * time.Millisecond
		cfg.JobMaster.Job.GCInterval = 100 * time.Millisecond
	})
	c.leader()
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 0, Tag: t.Name()}, "gc-me")
	waitJob(t, cl, id, 30*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := cl.GetJob(context.Background(), &api.GetJobRequest{JobId: id})
		if status.Code(err) == codes.NotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still there after retention: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The request id went with it: a new submit makes a new job.
	if id2 := submitTest(t, cl, testConfig{Tasks: 0, Tag: t.Name()}, "gc-me"); id2 == id {
		t.Fatal("request id of a compacted job still maps to it")
	}
}

// Capacity: with jobmaster.job.capacity jobs kept, a submit compacts the
// oldest finished one, or is refused when none has finished.
func TestCapacity(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) { cfg.JobMaster.Job.Capacity = 2 })
	c.leader()
	cl := c.client(0)
	a := submitTest(t, cl, testConfig{Tasks: 0, Tag: t.Name()}, "")
	waitJob(t, cl, a, 30*time.Second)
	submitTest(t, cl, testConfig{Tasks: 1, Block: true, Tag: t.Name()}, "")
	submitTest(t, cl, testConfig{Tasks: 1, Block: true, Tag: t.Name()}, "")
	if _, err := cl.GetJob(context.Background(), &api.GetJobRequest{JobId: a}); status.Code(err) != codes.NotFound {
		t.Fatalf("oldest finished job not compacted: %v", err)
	}
	_, err := cl.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: "test", ConfigJson: `{"tasks":0}`})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("submit beyond capacity: %v", err)
	}
}

// A verify round runs after the first when the plan asks for it.
func TestPlanRounds(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	c.addWorker(2)
	cl := c.client(0)
	id := submitTest(t, cl, testConfig{Tasks: 3, Verify: true, Tag: t.Name()}, "")
	j := waitJob(t, cl, id, 30*time.Second)
	if j.Status != api.JobInfo_COMPLETED || j.Round != 1 || j.TasksTotal != 6 {
		t.Fatalf("job with a verify round: %v", j)
	}
}

// A single job master restarted mid-job (bbolt log, TCP transport, file
// snapshots: the real parts) still has the job and completes it.
func TestSingleNodeRestartResumes(t *testing.T) {
	cfg := testConfigFor(t)
	cfg.JobMaster.RPCPort, cfg.JobMaster.Raft.Port = restartPorts(t)
	cfg.JobMaster.Raft.SnapshotThreshold = 50
	cfg.JobMaster.Raft.TrailingLogs = 10
	cfg.JobMaster.Raft.SnapshotInterval = 100 * time.Millisecond
	cfg.JobMaster.Raft.NodeID = ""
	cfg.JobMaster.Raft.NodeID = fmt.Sprintf("127.0.0.1:%d", cfg.JobMaster.Raft.Port)
	cfg.JobMaster.Planner.BatchSize = 5
	start := func() *Server {
		s, err := newServer(cfg, testLogger(t), serverOptions{env: nopEnv{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !s.IsLeader() {
			if time.Now().After(deadline) {
				t.Fatal("single node did not elect itself")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return s
	}
	s := start()
	wcfg := testConfigFor(t)
	wcfg.JobWorker.JobMaster = s.RPCAddr()
	wcfg.JobWorker.Threads = 2
	wcfg.JobWorker.RPCPort = 0
	w, err := newTestWorker(t, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	cc := dialT(t, s.RPCAddr())
	tag := uniqueTag(t)
	id := submitTest(t, cc, testConfig{Tasks: 200, SleepMs: 5, Tag: tag}, "restart")
	for runsOf(tag).finished.Load() < 40 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A snapshot mid-job, so the restart restores it and replays the rest.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	before := runsOf(tag).finished.Load()
	if snaps, _ := filepath.Glob(filepath.Join(cfg.JobMaster.Raft.Dir, "snapshots", "*")); len(snaps) == 0 {
		t.Fatal("no raft snapshot was written before the restart")
	}
	s = start()
	defer s.Stop(ctx)
	if s.fsm.restored.Load() == 0 {
		t.Fatal("the restarted job master did not restore its snapshot")
	}
	j := waitJob(t, cc, id, 30*time.Second)
	if j.Status != api.JobInfo_COMPLETED || j.TasksTotal != 200 || j.TasksDone != 200 {
		t.Fatalf("after restart: %v", j)
	}
	if runsOf(tag).finished.Load() <= before {
		t.Fatal("no task ran after the restart")
	}
	// Idempotency survives the restart too.
	if id2 := submitTest(t, cc, testConfig{Tasks: 200, SleepMs: 5, Tag: tag}, "restart"); id2 != id {
		t.Fatalf("resubmit after restart made job %d, want %d", id2, id)
	}
	// A snapshot of the live FSM restores to an equal state.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	_ = w.Stop(ctx)
}

// restartPorts are an rpc and a raft port for a job master the test
// stops and starts again on them: from testutil's reserved ranges, outside
// the kernel's ephemeral ports, so no other test's listener or connection
// takes one while the master is down.
func restartPorts(t *testing.T) (rpc, raft int) {
	t.Helper()
	base := testutil.PortBase(t)
	return base, base + 1
}

// A follower cut off while the log is compacted comes back by installing
// the leader's snapshot, and ends with the same state.
func TestClusterFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, func(cfg *config.Config) {
		cfg.JobMaster.Raft.SnapshotThreshold = 16
		cfg.JobMaster.Raft.TrailingLogs = 4
		cfg.JobMaster.Raft.SnapshotInterval = 50 * time.Millisecond
	})
	l := c.leader()
	li := c.index(l)
	fi := (li + 1) % 3
	cl := c.client(li)
	c.addWorker(4)
	// Cut the follower off.
	for j := range c.trans {
		if j != fi {
			c.trans[j].Disconnect(c.trans[fi].LocalAddr())
		}
	}
	c.trans[fi].DisconnectAll()
	for i := 0; i < 30; i++ {
		id := submitTest(t, cl, testConfig{Tasks: 5, Tag: t.Name()}, fmt.Sprintf("s%d", i))
		waitJob(t, cl, id, 10*time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.raft.Stats()["last_snapshot_index"] == "0" {
		if time.Now().After(deadline) {
			t.Fatal("the leader took no snapshot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for j := range c.trans {
		if j != fi {
			c.trans[j].Connect(c.trans[fi].LocalAddr(), c.trans[fi])
			c.trans[fi].Connect(c.trans[j].LocalAddr(), c.trans[j])
		}
	}
	f := c.servers[fi]
	deadline = time.Now().Add(15 * time.Second)
	for {
		if f.fsm.restored.Load() > 0 && dump(f.fsm) == dump(c.leader().fsm) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower did not catch up by snapshot (restores %d):\n%s\n---\n%s", f.fsm.restored.Load(), dump(f.fsm), dump(l.fsm))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A job's bandwidth is split over the job workers that run its tasks, not
// over every worker: of three workers, the one beside the only block
// worker a job may use runs it with the whole budget; a job running on all
// three gives each a third, then half to each of the two left when the
// first one's tasks complete, then all of it to the last.
func TestBandwidthSplitOverTheJobsWorkers(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	for i := 1; i <= 3; i++ {
		c.addWorkerBeside(1, jobworker.Colocated{BlockWorkerID: int64(i), BlockWorkerAddress: fmt.Sprintf("bw%d:29999", i)})
	}
	cl := c.client(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := cl.ListJobWorkers(context.Background(), &api.ListJobWorkersRequest{})
		if err == nil && len(resp.GetWorkers()) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("3 job workers did not register: %v %v", resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	const budget = 3 << 20
	// Two tasks: no more than the worker takes at once (threads 1, queue
	// 1), so no other worker steals one.
	tag := uniqueTag(t)
	id := submitTest(t, cl, testConfig{Tasks: 2, Bandwidth: budget, Workers: []string{"bw2"}, Place: "bw2:29999", Tag: tag}, "")
	if j := waitJob(t, cl, id, 20*time.Second); j.GetStatus() != api.JobInfo_COMPLETED {
		t.Fatalf("restricted job: %v", j)
	}
	log := runsOf(tag)
	log.mu.Lock()
	got := maps.Clone(log.limits)
	log.mu.Unlock()
	if len(got) != 1 || got["bw2:29999"] != budget {
		t.Fatalf("shares of a job restricted to bw2: %v, want the whole %d on bw2 alone", got, budget)
	}

	// Six tasks that run until released, two held by each worker (one
	// running, one queued: threads 1, queue 1): the budget is split over
	// the three, and re-split over the workers left as each one's tasks
	// complete.
	tag = uniqueTag(t)
	id = submitTest(t, cl, testConfig{Tasks: 6, Block: true, Bandwidth: budget, Tag: tag}, "")
	log = runsOf(tag)
	shares := func(want int64, bws ...string) {
		t.Helper()
		waitFor(t, fmt.Sprintf("shares of %d on %v", want, bws), func() bool {
			for _, bw := range bws {
				if log.share(bw) != want {
					return false
				}
			}
			return true
		})
	}
	waitFor(t, "a task running on each worker", func() bool { return log.started.Load() == 3 })
	shares(budget/3, "bw1:29999", "bw2:29999", "bw3:29999")
	close(log.releaseCh("bw1:29999"))
	shares(budget/2, "bw2:29999", "bw3:29999")
	close(log.releaseCh("bw2:29999"))
	shares(budget, "bw3:29999")
	close(log.releaseCh("bw3:29999"))
	if j := waitJob(t, cl, id, 20*time.Second); j.GetStatus() != api.JobInfo_COMPLETED {
		t.Fatalf("unrestricted job: %v", j)
	}
}

// A big job that waits for its tasks (at jobmaster.planner.max-outstanding)
// holds no planning slot: with one slot, a small job submitted behind it is
// planned and completes while the big one still waits.
func TestSmallJobPlannedBehindWaitingBigJob(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) {
		cfg.JobMaster.Planner.Concurrency = 1
		cfg.JobMaster.Planner.MaxOutstanding = 2
		cfg.JobMaster.Planner.BatchSize = 2
	})
	c.leader()
	c.addWorker(4)
	cl := c.client(0)
	big := submitTest(t, cl, testConfig{Tasks: 10, Block: true, Tag: uniqueTag(t)}, "")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		j := c.leader().FSM().Job(big)
		if j != nil && j.TasksTotal == 2 && j.TasksRunning == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("big job %+v: want 2 tasks planned and running", j)
		}
	}
	small := submitTest(t, cl, testConfig{Tasks: 1, Tag: uniqueTag(t)}, "")
	if j := waitJob(t, cl, small, 10*time.Second); j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("small job %v", j)
	}
	if j := c.leader().FSM().Job(big); j.terminal() || j.PlanningDone {
		t.Fatalf("big job should still wait for its tasks: %+v", j)
	}
}

// A small job is planned inside its submit: when SubmitJob answers, the
// job's tasks exist and its planning is over (one raft entry). One bigger
// than an inline plan, and one with a second round (verify), go through
// the planners and complete as before.
func TestClusterSmallJobPlannedInItsSubmit(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.addWorker(4)
	cl := c.client(0)
	tag := uniqueTag(t)
	small := submitTest(t, cl, testConfig{Tasks: 3, Tag: tag}, "small")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.GetJob(ctx, &api.GetJobRequest{JobId: small})
	if err != nil {
		t.Fatal(err)
	}
	if j := resp.GetJob(); !j.GetPlanningDone() || j.GetTasksTotal() != 3 {
		t.Fatalf("a small job right after its submit: %v", j)
	}
	big := submitTest(t, cl, testConfig{Tasks: inlinePlanTasks + 36, Tag: tag}, "big")
	verify := submitTest(t, cl, testConfig{Tasks: 2, Verify: true, Tag: tag}, "verify")
	for id, want := range map[int64]int64{small: 3, big: inlinePlanTasks + 36, verify: 4} {
		if j := waitJob(t, cl, id, 60*time.Second); j.Status != api.JobInfo_COMPLETED || j.TasksDone != want {
			t.Fatalf("job %d: %v", id, j)
		}
	}
}
