package jobmaster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
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
	g := restored(t, ft.f)
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
	// A month of an every-second schedule missed: the latest run is found
	// (without walking 2.6 million due times: see maxDueScan).
	every, _ := parseCron("* * * * * *")
	d := decide(every, &api.PolicyInfo{CursorMs: base.UnixMilli(), CatchUp: true}, base.Add(30*24*time.Hour+500*time.Millisecond), false)
	if d.kind != L || !d.scheduled.Equal(base.Add(30*24*time.Hour)) || d.missed < maxDueScan-1 {
		t.Fatalf("a month missed: %+v", d)
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
		if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // no leader for a moment: ask again, within ctx
			continue
		}
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

// runMs is the scheduled time a policy job's request id names
// (policy/<name>/<created>/<ms>), and false for a run-now job.
func runMs(t *testing.T, j *api.JobInfo) (int64, bool) {
	t.Helper()
	parts := strings.Split(j.RequestId, "/")
	if len(parts) != 4 || parts[0] != "policy" {
		t.Fatalf("job %d: request id %q is not a policy run's", j.Id, j.RequestId)
	}
	if strings.HasPrefix(parts[3], "now-") {
		return 0, false
	}
	ms, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		t.Fatalf("job %d: request id %q: %v", j.Id, j.RequestId, err)
	}
	return ms, true
}

// waitRun waits until policy name has a scheduled run at a time after ms,
// and returns that time.
func waitRun(t *testing.T, cl api.JobMasterClient, name string, after int64) int64 {
	t.Helper()
	var at int64
	deadline := time.Now().Add(30 * time.Second)
	for at == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("policy %s ran for no time after %s", name, time.UnixMilli(after).Format("15:04:05.000"))
		}
		for _, j := range policyJobs(t, cl, name) {
			if ms, ok := runMs(t, j); ok && ms > after {
				at = ms
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the job list, within deadline
	}
	return at
}

// TestPolicyFiresEverySecond checks the scheduler's decisions by the runs'
// scheduled times (in their request ids), not by counting jobs in a window
// of wall-clock time. A second policy, zz-clock, fires every second beside
// tick: the scheduler looks at the policies in name order, so once
// zz-clock has its run for second S, the pass that made it has decided
// tick's run for S — the event that says a due time has come and gone.
func TestPolicyFiresEverySecond(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	l := c.leader()
	c.addWorker(2)
	cl := c.client(c.index(l))
	tag := uniqueTag(t)
	// overlap allow and no tasks: the jobs' speed on a loaded machine does
	// not change which runs are launched.
	allow := func(p *api.PolicyInfo) { p.Overlap = overlapAllow }
	p := addTestPolicy(t, cl, "tick", "* * * * * *", testConfig{Tasks: 0, Tag: tag}, allow)
	if p.NextRunMs == 0 || p.Overlap != overlapAllow || !p.Enabled {
		t.Fatalf("added: %v", p)
	}
	addTestPolicy(t, cl, "zz-clock", "* * * * * *", testConfig{Tasks: 0, Tag: tag}, allow)
	ctx := context.Background()

	// Three runs; then, paused, every second from the first to the last is
	// a run or counted as missed (a scheduler starved past a second), and
	// no run was launched before its time.
	waitRun(t, cl, "tick", waitRun(t, cl, "tick", waitRun(t, cl, "tick", 0)))
	if _, err := cl.SetPolicyEnabled(ctx, &api.SetPolicyEnabledRequest{Name: "tick", Enabled: false}); err != nil {
		t.Fatal(err)
	}
	pausedMs := time.Now().UnixMilli()
	resp, err := cl.ListPolicies(ctx, &api.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var skipped int64
	for _, p := range resp.Policies {
		if p.Name == "tick" {
			skipped = p.Skipped
		}
	}
	var runs []int64
	for _, j := range policyJobs(t, cl, "tick") {
		ms, _ := runMs(t, j)
		if j.CreatedMs < ms {
			t.Errorf("job %d for the run at %d was created early, at %d", j.Id, ms, j.CreatedMs)
		}
		runs = append(runs, ms)
	}
	sort.Slice(runs, func(a, b int) bool { return runs[a] < runs[b] })
	if gaps := (runs[len(runs)-1]-runs[0])/1000 + 1 - int64(len(runs)); len(runs) < 3 || runs[0]%1000 != 0 || gaps > skipped {
		t.Fatalf("runs at %v, %d counted as missed: want whole seconds, each one run or missed", runs, skipped)
	}

	// Paused: a second comes and goes (zz-clock runs for it) and tick has
	// no run for it; resumed, it runs again without catching up the pause.
	waitRun(t, cl, "zz-clock", pausedMs)
	resumeMs := time.Now().UnixMilli()
	if _, err := cl.SetPolicyEnabled(ctx, &api.SetPolicyEnabledRequest{Name: "tick", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	waitRun(t, cl, "tick", resumeMs)
	for _, j := range policyJobs(t, cl, "tick") {
		if ms, ok := runMs(t, j); ok && ms > pausedMs && ms <= resumeMs {
			t.Fatalf("paused policy ran for %d (paused %d..%d)", ms, pausedMs, resumeMs)
		}
	}
	// Run now, and the list shows it as the last job.
	rn, err := cl.RunPolicyNow(ctx, &api.RunPolicyNowRequest{Name: "tick"})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, cl, rn.JobId, 10*time.Second); j.Policy != "tick" || j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("run-now job: %v", j)
	}
	// Removed: a second comes and goes and tick has no run for it.
	if _, err := cl.RemovePolicy(ctx, &api.RemovePolicyRequest{Name: "tick"}); err != nil {
		t.Fatal(err)
	}
	removedMs := time.Now().UnixMilli()
	waitRun(t, cl, "zz-clock", removedMs)
	jobs := policyJobs(t, cl, "tick")
	for _, j := range jobs {
		if ms, ok := runMs(t, j); ok && ms > removedMs {
			t.Fatalf("removed policy ran for %d (removed by %d)", ms, removedMs)
		}
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
	first := addTestPolicy(t, cl, "a", "@hourly", testConfig{Tasks: 1}, nil)
	if _, err := cl.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.PolicyInfo{Name: "a", Cron: "@daily", Plan: "test", ConfigJson: "{}"}}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate: %v", err)
	}
	// The same add again — a client resending an add whose answer it lost
	// to a leader change — answers the policy it made.
	if again := addTestPolicy(t, cl, "a", "@hourly", testConfig{Tasks: 1}, nil); again.GetCreatedMs() != first.GetCreatedMs() {
		t.Fatalf("the add resent made another policy: %v, first %v", again, first)
	}
}

// --overlap skip: while a slow job runs, due runs are skipped; queue: one
// waits and starts when the job ends; allow: jobs run at once. Checked on
// the jobs' own times, not on how many fit in a window.
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
	ctx := context.Background()
	policy := func(name string) *api.PolicyInfo {
		resp, err := cl.ListPolicies(ctx, &api.ListPoliciesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.Policies {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("no policy %s", name)
		return nil
	}
	// The events: skip has skipped a run, queue has started its second
	// job, allow has two jobs running at once.
	allowOverlapped := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		running := 0
		for _, j := range policyJobs(t, cl, "allow") {
			if !terminalJob(j.Status) {
				running++
			}
		}
		allowOverlapped = allowOverlapped || running >= 2
		if allowOverlapped && policy("skip").Skipped >= 1 && len(policyJobs(t, cl, "queue")) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: allow ran two at once %v, skip skipped %d, queue has %d jobs",
				allowOverlapped, policy("skip").Skipped, len(policyJobs(t, cl, "queue")))
		}
		time.Sleep(20 * time.Millisecond) // polling the jobs, within deadline
	}
	// skip and queue never run two jobs at once: each starts after the one
	// before has ended.
	for _, name := range []string{"skip", "queue"} {
		jobs := policyJobs(t, cl, name)
		checkOnePerRun(t, jobs)
		sort.Slice(jobs, func(a, b int) bool { return jobs[a].CreatedMs < jobs[b].CreatedMs })
		for i := 1; i < len(jobs); i++ {
			prev := waitJob(t, cl, jobs[i-1].Id, 10*time.Second)
			if jobs[i].CreatedMs < prev.FinishedMs {
				t.Errorf("%s: job %d created at %d while job %d ran (until %d)", name, jobs[i].Id, jobs[i].CreatedMs, prev.Id, prev.FinishedMs)
			}
		}
	}
	// The queue's second job is a run that fell due while the first ran
	// (it came from the queue, not from a later tick of the schedule).
	q := policyJobs(t, cl, "queue")
	sort.Slice(q, func(a, b int) bool { return q[a].CreatedMs < q[b].CreatedMs })
	first := waitJob(t, cl, q[0].Id, 10*time.Second)
	if ms, _ := runMs(t, q[1]); ms >= first.FinishedMs {
		t.Fatalf("queue: the second job is the run at %d, due after the first ended (%d): nothing was queued", ms, first.FinishedMs)
	}
	checkOnePerRun(t, policyJobs(t, cl, "allow"))
}

// A launch recorded in raft whose job the old leader never submitted is
// submitted by the next leader, with the same request id, exactly once.
func TestPolicyPendingLaunchSurvivesFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.addWorker(2)
	tag := uniqueTag(t)
	// A schedule that does not fire during the test.
	p := addTestPolicy(t, c.client(c.index(c.leader())), "p", "0 0 1 1 *", testConfig{Tasks: 1, Tag: tag}, nil)
	// The leader as it is now (on a loaded machine one may have been
	// elected meanwhile), with its leader state.
	var l *Server
	var ls *leaderState
	testutil.Eventually(t, 20*time.Second, func() error {
		l = c.leader()
		if ls = l.leader.Load(); ls == nil {
			return fmt.Errorf("%s no longer leads", l.cfg.JobMaster.Raft.NodeID)
		}
		return nil
	})
	li := c.index(l)
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
	// run-now takes the scheduler's lock: once it returns, any pass of the
	// new leader's scheduler under way has ended. Two jobs then: the
	// failover's and run-now's — not a second one for the one launch.
	var rn *api.RunPolicyNowResponse
	testutil.Eventually(t, 20*time.Second, func() error {
		var err error
		rn, err = ncl.RunPolicyNow(context.Background(), &api.RunPolicyNowRequest{Name: "p"})
		if status.Code(err) == codes.Unavailable { // "retry", as the SDK would
			return err
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
	launches := 0
	for _, j := range policyJobs(t, ncl, "p") {
		if j.RequestId == rid {
			launches++
		}
	}
	if launches != 1 {
		t.Fatalf("%d jobs for the one launch %s after run-now (job %d)", launches, rid, rn.JobId)
	}
}

// Runs missed while no job master was up are caught up once on restart.
func TestPolicyCatchUpAfterRestart(t *testing.T) {
	t.Parallel()
	for _, catchUp := range []bool{true, false} {
		t.Run(fmt.Sprintf("catchUp=%v", catchUp), func(t *testing.T) {
			cfg := testConfigFor(t)
			cfg.JobMaster.RPCPort, cfg.JobMaster.Raft.Port = restartPorts(t)
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
			waitRun(t, cc, "p", 0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			stopMs := time.Now().UnixMilli()
			var before *api.PolicyInfo
			s.fsm.view(func(st *state) { before = st.policy("p") })
			// The outage: four due times pass with no job master up (a
			// wait for the clock the schedule runs on, not for an event).
			time.Sleep(time.Until(time.UnixMilli(stopMs).Truncate(time.Second).Add(4*time.Second + 100*time.Millisecond)))
			restartMs := time.Now().UnixMilli()
			s = start()
			defer s.Stop(ctx)
			// The scheduler's decision about the gap is its first run after
			// the stop; wait for a second one, so it has gone on past it.
			var runs []int64
			testutil.Eventually(t, 20*time.Second, func() error {
				runs = runs[:0]
				for _, j := range policyJobs(t, cc, "p") {
					if ms, ok := runMs(t, j); ok && ms > before.CursorMs {
						runs = append(runs, ms)
					}
				}
				if len(runs) < 2 {
					return fmt.Errorf("%d runs since the restart", len(runs))
				}
				return nil
			})
			sort.Slice(runs, func(a, b int) bool { return runs[a] < runs[b] })
			first := runs[0]
			var after *api.PolicyInfo
			s.fsm.view(func(st *state) { after = st.policy("p") })
			// With catch-up, the one run for the gap is the latest due: the
			// scheduler decided no sooner than the restart, so it is no
			// earlier than the last whole second before it — never the first
			// missed. Without, no run older than misfireGrace at the restart
			// runs (a merely late one may).
			latestDue := restartMs / 1000 * 1000
			if catchUp && first < latestDue || !catchUp && first < restartMs-misfireGrace.Milliseconds() {
				t.Fatalf("catch-up %v: first run after the outage (%d..%d) is the one due at %d; the last due before the restart was %d",
					catchUp, stopMs, restartMs, first, latestDue)
			}
			// Every due time between the last run before the stop and the
			// first after is counted as missed.
			if want := (first-before.CursorMs)/1000 - 1; after.Skipped-before.Skipped < want || want < 3 {
				t.Fatalf("skipped %d → %d; %d due times passed between the runs at %d and %d", before.Skipped, after.Skipped, want, before.CursorMs, first)
			}
		})
	}
}
