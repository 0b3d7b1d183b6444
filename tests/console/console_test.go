package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// TestConsoleInBrowser walks the console as a person would, on a cluster
// of real processes: every check reads what the page shows.
func TestConsoleInBrowser(t *testing.T) {
	b := newBrowser(t)
	b.artifacts = artifactsDir(t)
	c := testutil.StartCluster(t, testutil.ClusterOptions{
		Workers: 2, JobMasters: 1, FSMasterJobMaster: true,
		// A task that cannot read its file fails at once, so the failed
		// job ends in seconds.
		Env: []string{"ALLUVIUM_JOBMASTER_TASK_MAX_ATTEMPTS=1"},
	})
	ctx := context.Background()
	fsUI := fmt.Sprintf("http://127.0.0.1:%d/ui/", c.PortBase+1)
	jmUI := "http://" + c.JobMasterHTTP(0) + "/ui/"

	// Data: /warm for the load the page starts, /slow for the job it
	// cancels, /flaky for the one that fails, each 8 blocks of 1 MiB.
	c.UFSTree("warm", map[string]int{"a.bin": 4 << 20, "b.bin": 4 << 20})
	c.UFSTree("slow", map[string]int{"a.bin": 4 << 20, "b.bin": 4 << 20})
	c.UFSTree("flaky", map[string]int{"ok.bin": 1 << 20, "gone.bin": 1 << 20})

	t.Run("wrong token refused", func(t *testing.T) {
		b.t = t
		b.run("open the console", 20*time.Second, chromedp.Navigate(fsUI), chromedp.WaitVisible(chromedp.CSS("#login-form")))
		b.run("log in with a wrong token", 20*time.Second,
			chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"),
			chromedp.Click(chromedp.CSS("#login-submit")),
			chromedp.WaitVisible(chromedp.CSS("#login-error")))
		if msg := b.text("#login-error"); !strings.Contains(msg, "Wrong token") {
			t.Fatalf("login error shows %q", msg)
		}
		b.shot("login-refused")
		// Still no session: the API refuses the browser.
		b.noSession(fsUI)
	})

	t.Run("log in", func(t *testing.T) {
		b.t = t
		b.run("log in with the cluster token", 20*time.Second,
			chromedp.SetValue(chromedp.CSS("#token"), testutil.ClusterToken()),
			chromedp.Click(chromedp.CSS("#login-submit")),
			chromedp.WaitVisible(chromedp.CSS("#ov-fsmaster")))
		if who := b.text("#who"); !strings.Contains(who, "superuser") {
			t.Fatalf("logged in as %q", who)
		}
		b.waitJS("overview shows 2 live workers", `document.querySelector('#ov-workers .stat a')?.textContent === '2'`, 20*time.Second)
		b.waitJS("overview names the leading job master", `document.querySelector('#ov-jobmasters')?.textContent.includes('LEADER')`, 20*time.Second)
		if fs := b.text("#ov-fsmaster"); !strings.Contains(fs, fmt.Sprint(c.PortBase)) {
			t.Fatalf("overview's FS master card %q does not name the master at port %d", fs, c.PortBase)
		}
		// One console: the session made on the FS master's port is valid
		// on the job master's.
		b.run("open the job master's console", 20*time.Second, chromedp.Navigate(jmUI+"workers"), chromedp.WaitVisible(chromedp.CSS("#block-workers")))
		b.waitJS("workers page lists both block workers", `document.querySelectorAll('#block-workers tbody tr').length === 2`, 20*time.Second)
		b.waitJS("workers page lists both job workers", `document.querySelectorAll('#job-workers tbody tr').length === 2`, 20*time.Second)
		b.shot("workers")
	})

	t.Run("load from the page reaches 100% without reload", func(t *testing.T) {
		b.t = t
		b.run("open jobs", 20*time.Second, chromedp.Navigate(fsUI+"jobs"), chromedp.WaitVisible(chromedp.CSS("#jobs-table")))
		evalJS[bool](b, `window.__notReloaded = true`)
		// 8 MiB at 2 MiB/s: a few seconds of visible progress.
		b.run("submit a load from the form", 20*time.Second,
			chromedp.Click(chromedp.CSS("#submit-toggle")),
			chromedp.SetValue(chromedp.CSS("#submit-plan"), "load"),
			chromedp.SetValue(chromedp.CSS("#submit-path"), "/warm"),
			chromedp.SetValue(chromedp.CSS("#submit-extra"), `{"bandwidth": 2097152}`),
			chromedp.Click(chromedp.CSS("#submit-go")),
			chromedp.WaitVisible(chromedp.CSS("#submit-ok a")))
		id := evalJS[int64](b, `Number(document.querySelector('#submit-ok a').textContent.replace('job #', ''))`)
		if id <= 0 {
			t.Fatalf("no job id after submit")
		}
		row := fmt.Sprintf(`document.querySelector('#jobs-table tr[data-id="%d"]')`, id)
		b.waitJS("the new job's row", row+` !== null`, 20*time.Second)
		// Watch the bar: record every percentage it shows until 100.
		seen := map[int]bool{}
		deadline := time.Now().Add(60 * time.Second)
		for {
			pct := evalJS[int](b, row+`.querySelector('.progress').dataset.pct | 0`)
			if pct > 20 && pct < 80 && !seen[-1] {
				b.shot("jobs") // the bar on its way
				seen[-1] = true
			}
			seen[pct] = true
			if pct == 100 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %d's bar stopped at %d%% (seen %v)", id, pct, seen)
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.waitJS("the row says COMPLETED", row+`.querySelector('.badge').dataset.status === 'COMPLETED'`, 20*time.Second)
		delete(seen, -1)
		var moving bool
		for p := range seen {
			moving = moving || p > 0 && p < 100
		}
		if !moving {
			t.Fatalf("job %d's bar jumped to 100%% without showing progress between (seen %v)", id, seen)
		}
		if !evalJS[bool](b, `window.__notReloaded === true`) {
			t.Fatal("the page reloaded while the job ran")
		}
		t.Logf("job %d's bar showed %d distinct values on its way to 100%%", id, len(seen))
		b.shot("jobs-completed")
		if j, err := c.Jobs.Get(ctx, id, false); err != nil || j.GetStatus() != sdk.JobCompleted || j.GetBytesDone() != 8<<20 {
			t.Fatalf("job %d: %v %v", id, j, err)
		}
	})

	t.Run("cancel a running job from its page", func(t *testing.T) {
		b.t = t
		// 8 MiB at 64 KiB/s would take two minutes: it is running when
		// canceled.
		id, err := c.Jobs.Submit(ctx, "load", sdk.LoadConfig{Path: "/slow", Bandwidth: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		b.run("open the job", 20*time.Second, chromedp.Navigate(fmt.Sprintf("%sjobs/%d", fsUI, id)), chromedp.WaitVisible(chromedp.CSS("#job-status")))
		b.waitJS("the job runs", `document.querySelector('#job-status .badge').dataset.status === 'RUNNING'`, 30*time.Second)
		b.shot("job-running")
		b.run("cancel it (two clicks)", 20*time.Second,
			chromedp.Click(chromedp.CSS("#job-cancel")),
			chromedp.Click(chromedp.CSS("#job-cancel")))
		b.waitJS("the page shows CANCELED", `document.querySelector('#job-status .badge').dataset.status === 'CANCELED'`, 30*time.Second)
		b.shot("job-canceled")
		if j, err := c.Jobs.Get(ctx, id, false); err != nil || j.GetStatus() != sdk.JobCanceled {
			t.Fatalf("job %d after cancel: %v %v", id, j, err)
		}
	})

	t.Run("a failed job shows its failed path and reason", func(t *testing.T) {
		b.t = t
		// The namespace learns both files, then one vanishes from the UFS;
		// a load that trusts the namespace (noSync) cannot read it.
		for info, err := range c.Client.List(ctx, "/flaky", sdk.ListOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			_ = info
		}
		if err := os.Remove(filepath.Join(c.UFSDir, "flaky", "gone.bin")); err != nil {
			t.Fatal(err)
		}
		id, err := c.Jobs.Submit(ctx, "load", sdk.LoadConfig{Path: "/flaky", NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		j, err := c.Jobs.Wait(ctx, id, nil)
		if j == nil || j.GetStatus() != sdk.JobFailed {
			t.Fatalf("job %d: %v %v (want FAILED)", id, j, err)
		}
		b.run("open the failed job", 20*time.Second, chromedp.Navigate(fmt.Sprintf("%sjobs/%d", fsUI, id)), chromedp.WaitVisible(chromedp.CSS("#failed-paths table")))
		failed := b.text("#failed-paths")
		if !strings.Contains(failed, "/flaky/gone.bin") {
			t.Fatalf("failed paths show %q, want /flaky/gone.bin", failed)
		}
		reason := strings.TrimSpace(strings.SplitN(failed, "/flaky/gone.bin", 2)[1])
		if len(reason) < 5 {
			t.Fatalf("no reason beside the failed path: %q", failed)
		}
		t.Logf("failed path shown with reason %q", reason)
		b.run("scroll to the failed paths", 10*time.Second, chromedp.ScrollIntoView(chromedp.CSS("#failed-paths")))
		b.shot("job-failed")
	})

	t.Run("browse to a file and see its worker locations", func(t *testing.T) {
		b.t = t
		b.run("browse /warm", 20*time.Second, chromedp.Navigate(fsUI+"browse?path=/warm"), chromedp.WaitVisible(chromedp.CSS("#files")))
		b.waitJS("a.bin is 100% cached", `document.querySelector('#files tr[data-path="/warm/a.bin"]')?.textContent.includes('100%')`, 20*time.Second)
		b.shot("browse")
		b.run("open a.bin", 20*time.Second,
			chromedp.Click(chromedp.CSS(`#files tr[data-path="/warm/a.bin"] a`)),
			chromedp.WaitVisible(chromedp.CSS("#blocks")))
		locs := evalJS[[]string](b, `[...document.querySelectorAll('#blocks .block-locations .loc')].map(e => e.dataset.worker)`)
		workers := map[string]bool{c.WorkerAddr(0): true, c.WorkerAddr(1): true}
		if len(locs) != 4 {
			t.Fatalf("a.bin's 4 blocks show %d locations: %v", len(locs), locs)
		}
		for _, l := range locs {
			if !workers[l] {
				t.Fatalf("block location %q is not one of the workers %v", l, workers)
			}
		}
		// What the page shows is what the FS master says.
		info, err := c.Client.Stat(ctx, "/warm/a.bin")
		if err != nil {
			t.Fatal(err)
		}
		for i, fb := range info.GetFileBlockInfos() {
			l := fb.GetBlockInfo().GetLocations()
			if len(l) != 1 || fmt.Sprintf("%s:%d", l[0].GetAddress().GetHost(), l[0].GetAddress().GetRpcPort()) != locs[i] {
				t.Fatalf("block %d: page says %s, FS master %v", i, locs[i], l)
			}
		}
		b.shot("browse-file")
		// The download link serves the file's bytes.
		n := evalJS[int](b, `fetch(document.querySelector('#download').href).then(r => r.arrayBuffer()).then(b => b.byteLength)`)
		if n != 4<<20 {
			t.Fatalf("download gave %d bytes, want %d", n, 4<<20)
		}
	})

	t.Run("policies and pipelines", func(t *testing.T) {
		b.t = t
		pols, err := c.Client.Policies()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pols.Add(ctx, sdk.PolicySpec{Name: "nightly-warm", Cron: "0 3 * * *", Plan: "load", Config: sdk.LoadConfig{Path: "/warm"}}); err != nil {
			t.Fatal(err)
		}
		p := sdk.NewPipeline("refresh")
		p.Job("warm", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/warm"}})
		p.Job("copy", sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": "/warm/a.bin", "dst": "/out/a.bin"}}, sdk.After("warm"))
		if rep, err := p.Run(ctx, c.Client); err != nil {
			t.Fatalf("pipeline: %v\n%v", err, rep)
		}
		b.run("open policies", 20*time.Second, chromedp.Navigate(fsUI+"policies"), chromedp.WaitVisible(chromedp.CSS(`#policies tr[data-policy="nightly-warm"]`)))
		b.run("run the policy now", 20*time.Second, chromedp.Click(chromedp.CSS(`#policies tr[data-policy="nightly-warm"] .policy-run`)))
		b.waitJS("the run shows as the last job", `document.querySelector('#policies tr[data-policy="nightly-warm"]')?.textContent.includes('#')`, 20*time.Second)
		b.run("pause it", 20*time.Second, chromedp.Click(chromedp.CSS(`#policies tr[data-policy="nightly-warm"] .policy-pause`)))
		b.waitJS("it shows paused", `document.querySelector('#policies tr[data-policy="nightly-warm"] .badge')?.dataset.status === 'PAUSED'`, 20*time.Second)
		if got, err := pols.Get(ctx, "nightly-warm"); err != nil || got.GetEnabled() || got.GetRuns() < 1 {
			t.Fatalf("policy after run-now and pause: %v %v", got, err)
		}
		b.waitJS("the pipeline run is drawn with both steps", `[...document.querySelectorAll('.pipeline-run[data-source="sdk"] .node')].map(n => n.dataset.step + '=' + n.dataset.status).join(',') === 'warm=COMPLETED,copy=COMPLETED'`, 20*time.Second)

		// A run the job master keeps knows its edges: warm, then two
		// copies after it, drawn as two arrows out of warm.
		pipes, err := c.Client.Pipelines()
		if err != nil {
			t.Fatal(err)
		}
		kept, err := pipes.Submit(ctx, &sdk.PipelineDef{Name: "fan-out", Steps: []*api.PipelineStep{
			{Name: "warm", Plan: "load", ConfigJson: `{"path": "/warm"}`},
			{Name: "copy-a", Plan: "copy", ConfigJson: `{"src": "/warm/a.bin", "dst": "/fan/a.bin"}`, After: []string{"warm"}},
			{Name: "copy-b", Plan: "copy", ConfigJson: `{"src": "/warm/b.bin", "dst": "/fan/b.bin"}`, After: []string{"warm"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if run, err := pipes.Wait(ctx, kept.GetId(), nil); err != nil || run.GetStatus() != api.PipelineRun_SUCCEEDED {
			t.Fatalf("kept pipeline run %d: %v %v", kept.GetId(), run, err)
		}
		run := fmt.Sprintf(`document.querySelector('.pipeline-run[data-source="cluster"][data-run="%d"]')`, kept.GetId())
		b.waitJS("the kept run is drawn with its steps", `[...(`+run+`?.querySelectorAll('.node') || [])].map(n => n.dataset.step + '=' + n.dataset.status).join(',') === 'warm=SUCCEEDED,copy-a=SUCCEEDED,copy-b=SUCCEEDED'`, 20*time.Second)
		if n := evalJS[int](b, run+`.querySelectorAll('path.edge').length`); n != 2 {
			t.Fatalf("the kept run has %d arrows, want 2 (warm → copy-a, warm → copy-b)", n)
		}
		// The copies stand in the column after warm.
		if ok := evalJS[bool](b, `(() => { const x = (s) => Number(`+run+`.querySelector('.node[data-step="' + s + '"] rect').getAttribute('x')); return x('copy-a') > x('warm') && x('copy-a') === x('copy-b'); })()`); !ok {
			t.Fatal("the kept run's copies are not drawn in the column after warm")
		}
		b.shot("policies")
	})

	t.Run("overview after the jobs", func(t *testing.T) {
		b.t = t
		b.run("open the overview", 20*time.Second, chromedp.Navigate(fsUI), chromedp.WaitVisible(chromedp.CSS("#ov-completed")))
		b.waitJS("completed jobs counted", `Number(document.querySelector('#ov-completed .stat a').textContent) >= 3`, 20*time.Second)
		b.waitJS("the failed job counted", `document.querySelector('#ov-failed .stat a').textContent === '1'`, 20*time.Second)
		b.shot("overview")
	})

	t.Run("logout", func(t *testing.T) {
		b.t = t
		b.run("log out", 20*time.Second, chromedp.Navigate(fsUI), chromedp.WaitVisible(chromedp.CSS("#logout")),
			chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
		b.noSession(fsUI)
	})
}

// noSession checks that the browser holds no session: the console's API
// answers it 401. (Opened as a page: the login form's policy allows no
// script requests.)
func (b *browser) noSession(ui string) {
	b.t.Helper()
	b.run("open the session API", 20*time.Second, chromedp.Navigate(ui+"api/session"))
	if body := evalJS[string](b, `document.body.innerText`); !strings.Contains(body, "not logged in") {
		b.t.Fatalf("without a session /ui/api/session shows %q", body)
	}
	b.run("back to the console", 20*time.Second, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#login-form")))
}
