package console

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// scaleJobs is how many finished jobs TestConsoleJobsPageAtScale puts in
// the cluster: ALLUVIUM_TEST_CONSOLE_JOBS, else a scaled-down 1,000 so `make
// test` keeps the measurement from rotting. docs/BENCHMARKS.md quotes a run
// with 100,000 (the job master keeps jobmaster.job.capacity = 100,000).
func scaleJobs(t *testing.T) int {
	if v := os.Getenv("ALLUVIUM_TEST_CONSOLE_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 100000 {
			t.Fatalf("ALLUVIUM_TEST_CONSOLE_JOBS=%q: want 100..100000", v)
		}
		return n
	}
	return 1000
}

// TestConsoleJobsPageAtScale measures the jobs page in the browser with
// many finished jobs in the cluster: the first paint of the list (from the
// navigation's start to the table drawn with its rows) and a filter change
// (from the change to the table drawn for the new filter), each the median
// of several tries. It logs the figures (and writes them to the artifacts
// dir as JSON) and asserts only that the page shows what the job master
// holds; latency is not asserted (run it alone, under
// `flock /work/bench.lock`, for figures worth quoting).
func TestConsoleJobsPageAtScale(t *testing.T) {
	n := scaleJobs(t)
	b := newBrowser(t)
	b.artifacts = artifactsDir(t)
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 1, FSMasterJobMaster: true,
		// Many small jobs planned at once: the point is a full job list.
		Env: []string{"ALLUVIUM_JOBMASTER_PLANNER_CONCURRENCY=64"}})
	ctx := context.Background()
	ui := fmt.Sprintf("http://127.0.0.1:%d/ui/", c.PortBase+1)

	// Finished jobs, made quickly: loads and persists of an empty
	// directory (planned, no task, COMPLETED); every tenth a persist.
	if _, err := c.Client.Mkdir(ctx, "/empty", sdk.MkdirOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var made atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := made.Add(1)
				if i > int64(n) {
					return
				}
				plan, cfg := "load", map[string]any{"path": "/empty", "noSync": true}
				if i%10 == 0 {
					plan, cfg = "persist", map[string]any{"path": "/empty"}
				}
				if _, err := c.Jobs.Submit(ctx, plan, cfg); err != nil {
					errs <- fmt.Errorf("submit %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Minute, func() error {
		done, err := c.Jobs.Count(ctx, sdk.ListJobsOptions{Statuses: []sdk.JobStatus{sdk.JobCompleted}})
		if err != nil {
			return err
		}
		if done < int64(n) {
			return fmt.Errorf("%d of %d jobs completed", done, n)
		}
		return nil
	})
	t.Logf("%d finished jobs made in %s", n, time.Since(start).Round(time.Millisecond))

	// The CLI pages the same way: --limit reads the newest N (shown oldest
	// first), and the filters are the job master's.
	newest, _, err := c.Jobs.ListPage(ctx, sdk.ListJobsOptions{NewestFirst: true, Plan: "persist", PageSize: 3}, "")
	if err != nil || len(newest) != 3 {
		t.Fatalf("newest persists: %v %v", newest, err)
	}
	var ls struct {
		Jobs []struct {
			ID   int64  `json:"id"`
			Plan string `json:"plan"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(c.MustCLI("job", "ls", "--plan", "persist", "--limit", "3", "--output", "json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Jobs) != 3 || ls.Jobs[0].ID != newest[2].GetId() || ls.Jobs[2].ID != newest[0].GetId() || ls.Jobs[1].Plan != "persist" {
		t.Fatalf("job ls --plan persist --limit 3: %+v, want ids %d, %d, %d", ls.Jobs, newest[2].GetId(), newest[1].GetId(), newest[0].GetId())
	}
	if out := c.MustCLI("job", "ls", "--submitter", "nobody", "--output", "json"); !strings.Contains(out, `"jobs": []`) {
		t.Fatalf("job ls --submitter nobody: %s", out)
	}

	b.run("log in", 30*time.Second, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SetValue(chromedp.CSS("#token"), testutil.ClusterToken()),
		chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS("#ov-fsmaster")))

	const tries = 5
	var paint, fcp []float64
	for i := 0; i < tries; i++ {
		b.run("open the jobs page", 60*time.Second, chromedp.Navigate(ui+"jobs"))
		b.waitJS("the list drawn", `document.querySelector('#jobs-table')?.dataset.renderedAt !== undefined`, 60*time.Second)
		paint = append(paint, evalJS[float64](b, `Number(document.querySelector('#jobs-table').dataset.renderedAt)`))
		fcp = append(fcp, evalJS[float64](b, `(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime`))
	}
	if got := b.text("#jobs-summary"); got != fmt.Sprintf("%s jobs", commas(n)) {
		t.Fatalf("the page counts %q, want %s jobs", got, commas(n))
	}
	rows := evalJS[int](b, `document.querySelectorAll('#jobs-table tbody tr').length`)
	if rows != 50 {
		t.Fatalf("first page shows %d rows, want 50", rows)
	}
	b.shot("jobs-at-scale")

	// A filter change: the select changes, the page asks the job master
	// (which walks every job to count the matches) and draws.
	change := func(sel, value string) float64 {
		expr := fmt.Sprintf(`(() => { const s = document.querySelector(%q); window.__t0 = performance.now(); s.value = %q; s.dispatchEvent(new Event('change')); return true; })()`, sel, value)
		evalJS[bool](b, expr)
		q := "size=50"
		if value != "" {
			key := map[string]string{"#filter-plan": "plan", "#filter-status": "status"}[sel]
			q = key + "=" + value + "&size=50"
		}
		b.waitJS("the list redrawn for "+value, fmt.Sprintf(`document.querySelector('#jobs-table').dataset.query === %q`, q), 60*time.Second)
		return evalJS[float64](b, `Number(document.querySelector('#jobs-table').dataset.renderedAt) - window.__t0`)
	}
	var planChange, statusChange []float64
	for i := 0; i < tries; i++ {
		planChange = append(planChange, change("#filter-plan", "persist"))
		if got := b.text("#jobs-summary"); got != fmt.Sprintf("%s jobs", commas(n/10)) {
			t.Fatalf("plan=persist: the page counts %q, want %s jobs", got, commas(n/10))
		}
		change("#filter-plan", "")
		// FAILED matches nothing: the job master walks all the jobs for
		// the page as well as for the count.
		statusChange = append(statusChange, change("#filter-status", "FAILED"))
		if got := b.text("#jobs-summary"); got != "0 jobs" {
			t.Fatalf("status=FAILED: the page counts %q, want 0 jobs", got)
		}
		change("#filter-status", "")
	}
	figures := map[string]any{
		"jobs":                      n,
		"firstPaintMs":              median(paint),
		"firstContentfulPaintMs":    median(fcp),
		"filterChangePlanMs":        median(planChange),
		"filterChangeNoMatchMs":     median(statusChange),
		"firstPaintRunsMs":          paint,
		"filterChangePlanRunsMs":    planChange,
		"filterChangeNoMatchRunsMs": statusChange,
	}
	t.Logf("jobs page with %d finished jobs: first paint %.0f ms (FCP %.0f ms), filter change plan=persist %.0f ms, status=FAILED (no match) %.0f ms; medians of %d (runs: %v, %v, %v)",
		n, median(paint), median(fcp), median(planChange), median(statusChange), tries, rounded(paint), rounded(planChange), rounded(statusChange))
	out, _ := json.MarshalIndent(figures, "", "  ")
	if err := os.WriteFile(filepath.Join(b.artifacts, "jobs-page-figures.json"), out, 0o644); err != nil {
		t.Log(err)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}

// commas formats n as the page does (en-US grouping).
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
