package jobmaster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// FSM commands of the policies.

func (ft *fsmT) addPolicy(name string, created int64) {
	ft.t.Helper()
	p := &api.PolicyInfo{Name: name, Cron: "*/10 * * * * *", Plan: "load", ConfigJson: `{"path":"/a"}`, Enabled: true,
		Overlap: overlapSkip, CatchUp: true, CreatedMs: created, CursorMs: created}
	if err, _ := ft.apply(&api.PutPolicyCommand{Policy: p, NowMs: created, CreateOnly: true}).(error); err != nil {
		ft.t.Fatal(err)
	}
}

func (ft *fsmT) policy(name string) *api.PolicyInfo {
	ft.t.Helper()
	var p *api.PolicyInfo
	ft.f.view(func(s *state) { p = s.policy(name) })
	if p == nil {
		ft.t.Fatalf("no policy %q", name)
	}
	return p
}

func launchCmd(name string, created int64, kind api.PolicyLaunchCommand_Kind, sched int64) *api.PolicyLaunchCommand {
	c := &api.PolicyLaunchCommand{Name: name, PolicyCreatedMs: created, Kind: kind, ScheduledMs: sched, NowMs: sched + 5}
	if kind == api.PolicyLaunchCommand_LAUNCH {
		c.RequestId = policyRequestID(&api.PolicyInfo{Name: name, CreatedMs: created}, sched, false)
	}
	return c
}

func isStale(v any) bool {
	err, _ := v.(error)
	return errors.Is(err, errStale)
}

func TestPolicyAddIsCreateOnly(t *testing.T) {
	ft := newFSMT(t)
	ft.addPolicy("hot", 1000)
	res := ft.apply(&api.PutPolicyCommand{Policy: &api.PolicyInfo{Name: "hot", Cron: "@hourly"}, CreateOnly: true})
	if err, _ := res.(error); !errors.Is(err, errPolicyExists) {
		t.Fatalf("second add: %v, want errPolicyExists", res)
	}
	if ft.policy("hot").GetCron() != "*/10 * * * * *" {
		t.Fatal("a refused add changed the policy")
	}
	if err, _ := ft.apply(&api.DeletePolicyCommand{Name: "nope"}).(error); !errors.Is(err, errPolicyNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

// A launch moves the cursor and leaves the launch pending; the submit entry
// that creates the job clears it in the same entry; replays are no-ops.
func TestPolicyLaunchRecordedThenSubmitted(t *testing.T) {
	ft := newFSMT(t)
	ft.addPolicy("hot", 1000)
	l := launchCmd("hot", 1000, api.PolicyLaunchCommand_LAUNCH, 10_000)
	if res := ft.apply(l); res != nil {
		t.Fatalf("launch: %v", res)
	}
	p := ft.policy("hot")
	if p.CursorMs != 10_000 || p.PendingRequestId != l.RequestId || p.PendingScheduledMs != 10_000 || p.Runs != 0 {
		t.Fatalf("after launch: %v", p)
	}
	// The same launch again (a new leader replaying its decision), a second
	// launch while one is pending, an older run, a launch for an older
	// incarnation of the policy: all stale, nothing changes.
	before := dump(ft.f)
	for i, c := range []*api.PolicyLaunchCommand{
		l,
		launchCmd("hot", 1000, api.PolicyLaunchCommand_LAUNCH, 20_000),
		launchCmd("hot", 1000, api.PolicyLaunchCommand_SKIP, 5_000),
		launchCmd("hot", 999, api.PolicyLaunchCommand_SKIP, 30_000),
		launchCmd("gone", 1000, api.PolicyLaunchCommand_SKIP, 30_000),
	} {
		if res := ft.apply(c); !isStale(res) {
			t.Fatalf("command %d: %v, want stale", i, res)
		}
	}
	if after := dump(ft.f); after != strings.Replace(before, fmt.Sprintf("index %d", ft.index-5), fmt.Sprintf("index %d", ft.index), 1) {
		t.Fatalf("stale commands changed the state:\n%s\n---\n%s", before, after)
	}
	// The job is submitted with the launch's request id.
	r := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: l.RequestId, Policy: "hot", NowMs: 10_010}).(submitResult)
	p = ft.policy("hot")
	if p.PendingRequestId != "" || p.LastJobId != r.id || p.Runs != 1 || p.LastRunMs != 10_000 {
		t.Fatalf("after submit: %v", p)
	}
	if j := ft.f.Job(r.id); j.Policy != "hot" || j.RequestID != l.RequestId {
		t.Fatalf("job: %+v", j)
	}
	// Submitting it again (a retry) finds the same job and changes nothing.
	r2 := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: l.RequestId, Policy: "hot", NowMs: 10_020}).(submitResult)
	if !r2.existed || r2.id != r.id || ft.policy("hot").Runs != 1 {
		t.Fatalf("resubmit: %+v, %v", r2, ft.policy("hot"))
	}
	// Skip and queue move the cursor; one run waits at most.
	if res := ft.apply(launchCmd("hot", 1000, api.PolicyLaunchCommand_SKIP, 20_000)); res != nil {
		t.Fatal(res)
	}
	q := launchCmd("hot", 1000, api.PolicyLaunchCommand_QUEUE, 30_000)
	q.Missed = 2
	if res := ft.apply(q); res != nil {
		t.Fatal(res)
	}
	if res := ft.apply(launchCmd("hot", 1000, api.PolicyLaunchCommand_QUEUE, 40_000)); !isStale(res) {
		t.Fatalf("second queue: %v", res)
	}
	p = ft.policy("hot")
	if p.CursorMs != 30_000 || p.QueuedMs != 30_000 || p.Skipped != 3 {
		t.Fatalf("after skip and queue: %v", p)
	}
	// The queued run launches without moving the cursor.
	fq := launchCmd("hot", 1000, api.PolicyLaunchCommand_LAUNCH, 30_000)
	fq.FromQueue = true
	if res := ft.apply(fq); res != nil {
		t.Fatal(res)
	}
	p = ft.policy("hot")
	if p.QueuedMs != 0 || p.PendingRequestId != fq.RequestId || p.CursorMs != 30_000 {
		t.Fatalf("after queued launch: %v", p)
	}
}

func TestPolicyPauseResume(t *testing.T) {
	ft := newFSMT(t)
	ft.addPolicy("p", 1000)
	ft.apply(launchCmd("p", 1000, api.PolicyLaunchCommand_QUEUE, 2000))
	if res := ft.apply(&api.SetPolicyEnabledCommand{Name: "p", Enabled: false, NowMs: 3000}); res != nil {
		t.Fatal(res)
	}
	p := ft.policy("p")
	if p.Enabled || p.QueuedMs != 0 || p.Skipped != 1 {
		t.Fatalf("paused: %v", p)
	}
	if res := ft.apply(&api.SetPolicyEnabledCommand{Name: "p", Enabled: true, NowMs: 90_000}); res != nil {
		t.Fatal(res)
	}
	// Runs due while paused are not caught up: the cursor moved to resume time.
	if p = ft.policy("p"); !p.Enabled || p.CursorMs != 90_000 {
		t.Fatalf("resumed: %v", p)
	}
	if err, _ := ft.apply(&api.SetPolicyEnabledCommand{Name: "x", Enabled: true}).(error); !errors.Is(err, errPolicyNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

// Policies, with pending launches and queued runs, survive snapshot and
// restore unchanged.
func TestPolicySnapshotRestore(t *testing.T) {
	ft := newFSMT(t)
	ft.addPolicy("a", 1000)
	ft.addPolicy("b", 1000)
	ft.apply(launchCmd("a", 1000, api.PolicyLaunchCommand_LAUNCH, 5000))
	ft.apply(launchCmd("b", 1000, api.PolicyLaunchCommand_QUEUE, 6000))
	ft.apply(&api.SetPolicyEnabledCommand{Name: "b", Enabled: false, NowMs: 7000})
	want := dump(ft.f)
	snap, err := ft.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := dump(g); got != want {
		t.Fatalf("restored:\n%s\nwant:\n%s", got, want)
	}
	var a *api.PolicyInfo
	g.view(func(s *state) { a = s.policy("a") })
	if a.GetPendingRequestId() == "" || a.GetCursorMs() != 5000 {
		t.Fatalf("restored pending launch lost: %v", a)
	}
}

// The scheduler's rule.
func TestPolicyDecide(t *testing.T) {
	sched, err := parseCron("*/10 * * * * *")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	pol := func(cursor float64, overlap string, catchUp bool, queued int64) *api.PolicyInfo {
		return &api.PolicyInfo{CursorMs: at(cursor).UnixMilli(), Overlap: overlap, CatchUp: catchUp, QueuedMs: queued}
	}
	K := api.PolicyLaunchCommand_KIND_UNSPECIFIED
	L, S, Q := api.PolicyLaunchCommand_LAUNCH, api.PolicyLaunchCommand_SKIP, api.PolicyLaunchCommand_QUEUE
	for _, c := range []struct {
		name    string
		p       *api.PolicyInfo
		now     float64
		running bool
		kind    api.PolicyLaunchCommand_Kind
		sched   float64
		missed  int64
	}{
		{"not due", pol(0, "skip", true, 0), 9.9, false, K, 10, 0},
		{"due", pol(0, "skip", true, 0), 10.05, false, L, 10, 0},
		{"late within grace", pol(0, "skip", false, 0), 11.5, false, L, 10, 0},
		{"missed, caught up once", pol(0, "skip", true, 0), 65, false, L, 60, 5},
		{"missed, no catch-up", pol(0, "skip", false, 0), 65, false, S, 60, 5},
		{"missed, just due now, no catch-up", pol(0, "skip", false, 0), 60.5, false, L, 60, 5},
		{"overlap skip", pol(0, "skip", true, 0), 10, true, S, 10, 0},
		{"overlap queue", pol(0, "queue", true, 0), 10, true, Q, 10, 0},
		{"overlap queue, one waits already", pol(0, "queue", true, 1), 10, true, S, 10, 0},
		{"overlap allow", pol(0, "allow", true, 0), 10, true, L, 10, 0},
		{"cursor on a run", pol(10, "skip", true, 0), 15, false, K, 20, 0},
	} {
		d := decide(sched, c.p, at(c.now), c.running)
		if d.kind != c.kind {
			t.Errorf("%s: kind %v, want %v", c.name, d.kind, c.kind)
			continue
		}
		if c.kind == K {
			if !d.next.Equal(at(c.sched)) {
				t.Errorf("%s: next %v, want %v", c.name, d.next, at(c.sched))
			}
			continue
		}
		if !d.scheduled.Equal(at(c.sched)) || d.missed != c.missed {
			t.Errorf("%s: scheduled %v missed %d, want %v and %d", c.name, d.scheduled, d.missed, at(c.sched), c.missed)
		}
	}
	// A month of an every-second schedule missed is found quickly.
	every, _ := parseCron("* * * * * *")
	start := time.Now()
	d := decide(every, &api.PolicyInfo{CursorMs: base.UnixMilli(), CatchUp: true}, base.Add(30*24*time.Hour+500*time.Millisecond), false)
	if d.kind != L || !d.scheduled.Equal(base.Add(30*24*time.Hour)) || d.missed < maxDueScan-1 {
		t.Fatalf("a month missed: %+v", d)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("deciding a month missed took %s", took)
	}
}

func TestParseCron(t *testing.T) {
	for _, ok := range []string{"*/10 * * * * *", "0 3 * * *", "@hourly", "@every 15s", "CRON_TZ=Europe/Paris 0 2 * * *"} {
		if _, err := parseCron(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "nope", "* * *", "61 * * * *", "0 0 30 2 *", "1 2 3 4 5 6 7"} {
		if _, err := parseCron(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The servers: a policy fires on a seconds schedule, from the leader only,
// and pause/resume/rm/run-now work through the RPCs.

func addTestPolicy(t *testing.T, cl api.JobMasterClient, name, spec string, c testConfig, mod func(*api.PolicyInfo)) *api.PolicyInfo {
	t.Helper()
	b, _ := json.Marshal(c)
	p := &api.PolicyInfo{Name: name, Cron: spec, Plan: "test", ConfigJson: string(b), CatchUp: true}
	if mod != nil {
		mod(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for range 50 {
		var resp *api.AddPolicyResponse
		resp, err = cl.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p})
		if err == nil {
			return resp.Policy
		}
		if status.Code(err) != codes.Unavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("add policy: %v", err)
	return nil
}

// policyJobs lists the jobs a policy launched, by id.
func policyJobs(t *testing.T, cl api.JobMasterClient, name string) []*api.JobInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []*api.JobInfo
	tok := ""
	for {
		resp, err := cl.ListJobs(ctx, &api.ListJobsRequest{PageSize: 1000, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range resp.Jobs {
			if j.Policy == name {
				out = append(out, j)
			}
		}
		if tok = resp.NextPageToken; tok == "" {
			return out
		}
	}
}

func checkOnePerRun(t *testing.T, jobs []*api.JobInfo) {
	t.Helper()
	seen := map[string]int64{}
	for _, j := range jobs {
		if prev, ok := seen[j.RequestId]; ok {
			t.Fatalf("jobs %d and %d are the same run %s", prev, j.Id, j.RequestId)
		}
		seen[j.RequestId] = j.Id
	}
}

func TestPolicyFiresEverySecond(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	l := c.leader()
	c.addWorker(2)
	cl := c.client(c.index(l))
	tag := uniqueTag(t)
	// Start on a second boundary so the window holds a known number of runs.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
	// overlap allow and no tasks: this counts the scheduler's runs, whatever
	// the jobs' speed on a loaded machine.
	p := addTestPolicy(t, cl, "tick", "* * * * * *", testConfig{Tasks: 0, Tag: tag}, func(p *api.PolicyInfo) { p.Overlap = overlapAllow })
	if p.NextRunMs == 0 || p.Overlap != overlapAllow || !p.Enabled {
		t.Fatalf("added: %v", p)
	}
	start := time.Now()
	time.Sleep(4 * time.Second)
	got := len(policyJobs(t, cl, "tick"))
	want := int(time.Since(start) / time.Second)
	if got < want-1 || got > want+1 {
		t.Fatalf("%d runs in %s, want %d±1", got, time.Since(start), want)
	}
	// Paused: no more runs.
	ctx := context.Background()
	if _, err := cl.SetPolicyEnabled(ctx, &api.SetPolicyEnabledRequest{Name: "tick", Enabled: false}); err != nil {
		t.Fatal(err)
	}
	paused := len(policyJobs(t, cl, "tick"))
	time.Sleep(2500 * time.Millisecond)
	if n := len(policyJobs(t, cl, "tick")); n != paused {
		t.Fatalf("paused policy ran: %d → %d", paused, n)
	}
	// Resumed: runs again, without catching up the paused time.
	if _, err := cl.SetPolicyEnabled(ctx, &api.SetPolicyEnabledRequest{Name: "tick", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if n := len(policyJobs(t, cl, "tick")); n < paused+1 || n > paused+4 {
		t.Fatalf("resumed: %d → %d runs in 2.5s", paused, n)
	}
	// Run now, and the list shows it as the last job.
	rn, err := cl.RunPolicyNow(ctx, &api.RunPolicyNowRequest{Name: "tick"})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, cl, rn.JobId, 10*time.Second); j.Policy != "tick" || j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("run-now job: %v", j)
	}
	// Removed: no more runs.
	if _, err := cl.RemovePolicy(ctx, &api.RemovePolicyRequest{Name: "tick"}); err != nil {
		t.Fatal(err)
	}
	removed := len(policyJobs(t, cl, "tick"))
	time.Sleep(2 * time.Second)
	jobs := policyJobs(t, cl, "tick")
	if len(jobs) != removed {
		t.Fatalf("removed policy ran: %d → %d", removed, len(jobs))
	}
	checkOnePerRun(t, jobs)
	if _, err := cl.RemovePolicy(ctx, &api.RemovePolicyRequest{Name: "tick"}); status.Code(err) != codes.NotFound {
		t.Fatalf("rm twice: %v", err)
	}
}

func TestPolicyAddRefusesBadInput(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	cl := c.client(c.index(c.leader()))
	ctx := context.Background()
	for _, tc := range []struct {
		p    *api.PolicyInfo
		code codes.Code
		msg  string
	}{
		{&api.PolicyInfo{Name: "a", Cron: "every tuesday", Plan: "test", ConfigJson: `{"tasks":1}`}, codes.InvalidArgument, "--cron"},
		{&api.PolicyInfo{Name: "a", Cron: "@hourly", Plan: "nope", ConfigJson: `{"tasks":1}`}, codes.InvalidArgument, "unknown plan"},
		{&api.PolicyInfo{Name: "a", Cron: "@hourly", Plan: "test", ConfigJson: `{"tasks":"x"}`}, codes.Unavailable, "test config"},
		{&api.PolicyInfo{Name: "a", Cron: "@hourly", Plan: "test", ConfigJson: `nope`}, codes.InvalidArgument, "JSON"},
		{&api.PolicyInfo{Name: "a b", Cron: "@hourly", Plan: "test", ConfigJson: `{}`}, codes.InvalidArgument, "bad name"},
		{&api.PolicyInfo{Name: "a", Cron: "@hourly", Plan: "test", ConfigJson: `{}`, Overlap: "sometimes"}, codes.InvalidArgument, "overlap"},
	} {
		_, err := cl.AddPolicy(ctx, &api.AddPolicyRequest{Policy: tc.p})
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v, want %s with %q", tc.p, err, tc.code, tc.msg)
		}
	}
	resp, err := cl.ListPolicies(ctx, &api.ListPoliciesRequest{})
	if err != nil || len(resp.Policies) != 0 {
		t.Fatalf("after refused adds: %v %v", resp, err)
	}
	addTestPolicy(t, cl, "a", "@hourly", testConfig{Tasks: 1}, nil)
	if _, err := cl.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.PolicyInfo{Name: "a", Cron: "@daily", Plan: "test", ConfigJson: "{}"}}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate: %v", err)
	}
}

// --overlap skip: while a slow job runs, due runs are skipped.
func TestPolicyOverlap(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	l := c.leader()
	c.addWorker(8)
	cl := c.client(c.index(l))
	tag := uniqueTag(t)
	addTestPolicy(t, cl, "skip", "* * * * * *", testConfig{Tasks: 1, SleepMs: 2500, Tag: tag}, nil)
	addTestPolicy(t, cl, "queue", "* * * * * *", testConfig{Tasks: 1, SleepMs: 2500, Tag: tag}, func(p *api.PolicyInfo) { p.Overlap = overlapQueue })
	addTestPolicy(t, cl, "allow", "* * * * * *", testConfig{Tasks: 1, SleepMs: 2500, Tag: tag}, func(p *api.PolicyInfo) { p.Overlap = overlapAllow })
	time.Sleep(4 * time.Second)
	ctx := context.Background()
	resp, err := cl.ListPolicies(ctx, &api.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Policies {
		jobs := policyJobs(t, cl, p.Name)
		checkOnePerRun(t, jobs)
		running := 0
		for _, j := range jobs {
			if !terminalJob(j.Status) {
				running++
			}
		}
		switch p.Name {
		case "skip":
			// ~4 runs due, each job takes 2.5 s: 2 launched, the rest skipped.
			if len(jobs) < 1 || len(jobs) > 2 || p.Skipped < 1 || running > 1 {
				t.Errorf("skip: %d jobs (%d running), %d skipped", len(jobs), running, p.Skipped)
			}
		case "queue":
			if len(jobs) < 1 || len(jobs) > 2 || running > 1 || (len(jobs) < 2 && p.QueuedMs == 0) {
				t.Errorf("queue: %d jobs (%d running), queued %d", len(jobs), running, p.QueuedMs)
			}
		case "allow":
			if len(jobs) < 3 || running < 2 {
				t.Errorf("allow: %d jobs, %d running at once", len(jobs), running)
			}
		}
	}
	// The queued run starts as soon as the previous job ends.
	q := policyJobs(t, cl, "queue")
	first := waitJob(t, cl, q[0].Id, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		q = policyJobs(t, cl, "queue")
		if len(q) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queued run did not start after the job ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Duration(q[1].CreatedMs-first.FinishedMs) * time.Millisecond; d > time.Second {
		t.Fatalf("the queued run started %s after the job ended", d)
	}
}

// A launch recorded in raft whose job the old leader never submitted is
// submitted by the next leader, with the same request id, exactly once.
func TestPolicyPendingLaunchSurvivesFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	l := c.leader()
	li := c.index(l)
	c.addWorker(2)
	cl := c.client(li)
	tag := uniqueTag(t)
	// A schedule that does not fire during the test.
	p := addTestPolicy(t, cl, "p", "0 0 1 1 *", testConfig{Tasks: 1, Tag: tag}, nil)
	ls := l.leader.Load()
	// Hold the old leader's scheduler: it records the launch and never
	// gets to submit it.
	ls.pol.mu.Lock()
	now := time.Now().UnixMilli()
	rid := policyRequestID(p, now, true)
	if err := l.applyErr(context.Background(), &api.PolicyLaunchCommand{
		Name: "p", PolicyCreatedMs: p.CreatedMs, Kind: api.PolicyLaunchCommand_LAUNCH, ScheduledMs: now, RequestId: rid, Manual: true, NowMs: now,
	}); err != nil {
		ls.pol.mu.Unlock()
		t.Fatal(err)
	}
	for j := range c.trans {
		if j != li {
			c.trans[j].Disconnect(c.trans[li].LocalAddr())
		}
	}
	c.trans[li].DisconnectAll()
	ls.pol.mu.Unlock()
	c.kill(li)
	nl := c.leader()
	ncl := c.client(c.index(nl))
	deadline := time.Now().Add(10 * time.Second)
	var jobs []*api.JobInfo
	for {
		jobs = policyJobs(t, ncl, "p")
		if len(jobs) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(jobs) != 1 || jobs[0].RequestId != rid {
		t.Fatalf("after failover: %v, want one job with request id %s", jobs, rid)
	}
	waitJob(t, ncl, jobs[0].Id, 10*time.Second)
	resp, err := ncl.ListPolicies(context.Background(), &api.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Policies[0]
	if got.PendingRequestId != "" || got.LastJobId != jobs[0].Id || got.Runs != 1 || got.LastJobStatus != api.JobInfo_COMPLETED {
		t.Fatalf("policy after failover: %v", got)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(policyJobs(t, ncl, "p")); n != 1 {
		t.Fatalf("%d jobs for one launch", n)
	}
}

// Runs missed while no job master was up are caught up once on restart.
func TestPolicyCatchUpAfterRestart(t *testing.T) {
	t.Parallel()
	for _, catchUp := range []bool{true, false} {
		t.Run(fmt.Sprintf("catchUp=%v", catchUp), func(t *testing.T) {
			cfg := testConfigFor(t)
			cfg.JobMaster.RPCPort = freePort(t)
			cfg.JobMaster.Raft.Port = freePort(t)
			cfg.JobMaster.Raft.NodeID = fmt.Sprintf("127.0.0.1:%d", cfg.JobMaster.Raft.Port)
			start := func() *Server {
				s, err := newServer(cfg, testLogger(t), serverOptions{env: nopEnv{}, noHTTP: true})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for !s.IsLeader() {
					if time.Now().After(deadline) {
						t.Fatal("no leader")
					}
					time.Sleep(10 * time.Millisecond)
				}
				return s
			}
			s := start()
			cc := dialT(t, s.RPCAddr())
			addTestPolicy(t, cc, "p", "* * * * * *", testConfig{Tasks: 0}, func(p *api.PolicyInfo) { p.CatchUp = catchUp })
			time.Sleep(1500 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			stopMs := time.Now().UnixMilli()
			var before *api.PolicyInfo
			s.fsm.view(func(st *state) { before = st.policy("p") })
			time.Sleep(4 * time.Second) // ~4 runs missed
			s = start()
			defer s.Stop(ctx)
			// The window of missed runs ends when the new leader is up, not
			// when the process started: an election under load can take a
			// second or more, and runs due meanwhile were missed too.
			leaderMs := time.Now().UnixMilli()
			// Each job's request id names its run: policy/p/<created>/<scheduled ms>.
			var during []int64
			deadline := time.Now().Add(10 * time.Second)
			for {
				during = during[:0]
				later := false
				for _, j := range policyJobs(t, cc, "p") {
					parts := strings.Split(j.RequestId, "/")
					var ms int64
					fmt.Sscan(parts[len(parts)-1], &ms)
					if ms > stopMs && ms <= leaderMs {
						during = append(during, ms)
					}
					later = later || ms > leaderMs
				}
				// Wait until the scheduler has caught up and run on past the
				// restart, so every decision about the gap has been made.
				if later || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			var after *api.PolicyInfo
			s.fsm.view(func(st *state) { after = st.policy("p") })
			// Without catch-up only a run due within misfireGrace of the
			// restart may still run (it is merely late).
			graceOK := len(during) == 0 || len(during) == 1 && during[0] >= leaderMs-misfireGrace.Milliseconds()
			// With catch-up, the one run is the latest missed (within a second
			// or two of the new leader), not the first (4 s before).
			if catchUp && (len(during) != 1 || during[0] < leaderMs-2500) || !catchUp && !graceOK {
				t.Fatalf("catch-up %v: runs due while down %v (down %d..%d), want the latest only with catch-up", catchUp, during, stopMs, leaderMs)
			}
			if after.Skipped-before.Skipped < 3 {
				t.Fatalf("skipped %d → %d: the missed runs were not counted", before.Skipped, after.Skipped)
			}
		})
	}
}
