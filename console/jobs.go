package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/sdk"
)

const (
	defJobsPage = 50
	maxJobsPage = 500
	// maxWatches bounds the jobs one event stream follows (a page of jobs,
	// plus the ones submitted while it is open).
	maxWatches = 200
	// newJobsEvery is how often a stream following the newest jobs looks
	// for new ones.
	newJobsEvery = time.Second
)

// listOptions reads the jobs filters of a query: status (comma-separated),
// plan, submitter, policy.
func listOptions(r *http.Request) (sdk.ListJobsOptions, error) {
	q := r.URL.Query()
	o := sdk.ListJobsOptions{NewestFirst: true, Plan: q.Get("plan"), Submitter: q.Get("submitter"), Policy: q.Get("policy")}
	for _, s := range paramList(q.Get("status")) {
		st, ok := jobview.ParseStatus(s)
		if !ok {
			return o, fmt.Errorf("status %q: want CREATED, RUNNING, COMPLETED, FAILED or CANCELED", s)
		}
		o.Statuses = append(o.Statuses, st)
	}
	return o, nil
}

// listJob is a job as the list shows it: without its failed paths (up to a
// thousand each; the job's page has them).
func listJob(j *sdk.JobInfo) sdk.JobJSON {
	v := sdk.ToJSON(j)
	v.Failed = nil
	return v
}

// GET /ui/api/jobs?status=&plan=&submitter=&policy=&page=TOKEN&size=N: one
// page of jobs, newest first, the token of the next and the total matching.
func (c *Console) apiJobs(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	o, err := listOptions(r)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	o.PageSize = defJobsPage
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxJobsPage {
			badRequest(w, "size %q: want 1..%d", v, maxJobsPage)
			return
		}
		o.PageSize = int32(n)
	}
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	// The page and the count are two walks of the job master's B-tree; do
	// them at once.
	var (
		total    int64
		countErr error
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		total, countErr = jobs.Count(ctx, o)
	}()
	page, next, err := jobs.ListPage(ctx, o, r.URL.Query().Get("page"))
	wg.Wait()
	if err == nil {
		err = countErr
	}
	if err != nil {
		writeError(w, err)
		return
	}
	out := struct {
		Jobs  []sdk.JobJSON `json:"jobs"`
		Next  string        `json:"next,omitempty"`
		Total int64         `json:"total"`
	}{Jobs: make([]sdk.JobJSON, 0, len(page)), Next: next, Total: total}
	for _, j := range page {
		out.Jobs = append(out.Jobs, listJob(j))
	}
	writeJSON(w, http.StatusOK, out)
}

// jobDetail is a job's page: the job with its tasks and failed paths, and
// its bytes over time.
type jobDetail struct {
	Job sdk.JobJSON `json:"job"`
	// Series is [ms, bytes done] points: the job's start, each task's end
	// (cumulative bytes), and its last update. With more tasks than the job
	// master lists (1000), the steps cover those listed and the last point
	// the whole job.
	Series [][2]int64 `json:"series"`
}

// GET /ui/api/jobs/{id}
func (c *Console) apiJob(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	info, err := jobs.Get(ctx, id, true)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, jobDetail{Job: sdk.ToJSON(info), Series: bytesSeries(info)})
}

// bytesSeries derives a job's bytes over time from its tasks' ends.
func bytesSeries(j *sdk.JobInfo) [][2]int64 {
	type end struct{ ms, bytes int64 }
	var ends []end
	for _, t := range j.GetTasks() {
		if t.GetBytesDone() > 0 && t.GetUpdatedMs() > 0 && t.GetStatus() == api.TaskInfo_COMPLETED {
			ends = append(ends, end{t.GetUpdatedMs(), t.GetBytesDone()})
		}
	}
	slices.SortFunc(ends, func(a, b end) int { return int(a.ms - b.ms) })
	series := [][2]int64{{j.GetCreatedMs(), 0}}
	var sum int64
	for _, e := range ends {
		sum += e.bytes
		if e.ms < series[len(series)-1][0] {
			e.ms = series[len(series)-1][0]
		}
		series = append(series, [2]int64{e.ms, min(sum, max(j.GetBytesDone(), sum))})
	}
	last := j.GetUpdatedMs()
	if f := j.GetFinishedMs(); f > 0 {
		last = f
	}
	if last >= series[len(series)-1][0] && (j.GetBytesDone() != sum || len(series) == 1) {
		series = append(series, [2]int64{last, j.GetBytesDone()})
	}
	return series
}

func jobID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		badRequest(w, "job id %q: not a job id", v)
		return 0, false
	}
	return id, true
}

// submitRequest is the body of POST /ui/api/jobs.
type submitRequest struct {
	Plan   string          `json:"plan"`
	Config json.RawMessage `json:"config"`
	// RequestID makes a resubmitted form (a double click, a retry) return
	// the first job rather than a second.
	RequestID string `json:"requestId,omitempty"`
}

// POST /ui/api/jobs {plan, config, requestId}: submit a job as the user.
func (c *Console) apiSubmit(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	var req submitRequest
	if !readJSON(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Plan) == "" {
		badRequest(w, "plan: missing")
		return
	}
	if len(req.Config) == 0 || string(req.Config) == "null" {
		req.Config = json.RawMessage("{}")
	}
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	var opts []sdk.SubmitOption
	if req.RequestID != "" {
		opts = append(opts, sdk.WithRequestID("console/"+req.RequestID))
	}
	id, err := jobs.Submit(ctx, req.Plan, req.Config, opts...)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"id": id})
}

// POST /ui/api/jobs/{id}/cancel
func (c *Console) apiCancel(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	if err := jobs.Cancel(ctx, id); err != nil {
		writeError(w, err)
		return
	}
	info, err := jobs.Get(ctx, id, false)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, listJob(info))
}

// GET /ui/api/jobs/{id}/events: the job's state on every change, as
// server-sent events ("job"), from the job master's watch (the one
// `job submit --wait` follows); the stream ends after the final state.
func (c *Console) apiJobEvents(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	ev := newEvents(w)
	for info, err := range jobs.Watch(ctx, id) {
		if err != nil {
			if ctx.Err() == nil {
				_ = ev.send("failure", map[string]string{"error": err.Error()})
			}
			return
		}
		if ev.send("job", listJob(info)) != nil {
			return
		}
	}
	_ = ev.send("end", map[string]int64{"id": id})
}

// GET /ui/api/jobs/events?watch=ID,ID&follow=AFTER&status=&plan=&submitter=&policy=:
// the listed jobs' states on every change, as server-sent events ("job"),
// each from the job master's watch of that job. With follow, jobs newer
// than AFTER that match the filters are sent as they appear, and followed
// too.
func (c *Console) apiJobsEvents(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	q := r.URL.Query()
	o, err := listOptions(r)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	var ids []int64
	for _, s := range paramList(q.Get("watch")) {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			badRequest(w, "watch: %q is not a job id", s)
			return
		}
		ids = append(ids, id)
	}
	follow := q.Has("follow")
	after, err := strconv.ParseInt(q.Get("follow"), 10, 64)
	if follow && (err != nil || after < 0) {
		badRequest(w, "follow %q: want the newest job id shown (0: none)", q.Get("follow"))
		return
	}
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()

	updates := make(chan *sdk.JobInfo, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	watching := map[int64]bool{}
	watch := func(id int64) {
		if watching[id] || len(watching) >= maxWatches {
			return
		}
		watching[id] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			for info, err := range jobs.Watch(ctx, id) {
				if err != nil {
					return
				}
				select {
				case updates <- info:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for _, id := range ids {
		watch(id)
	}
	ev := newEvents(w)
	tick := time.NewTicker(newJobsEvery)
	defer tick.Stop()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	o.NewestFirst = false
	o.PageSize = 100
	for {
		select {
		case <-ctx.Done():
			return
		case info := <-updates:
			if ev.send("job", listJob(info)) != nil {
				return
			}
		case <-ping.C:
			if ev.ping() != nil {
				return
			}
		case <-tick.C:
			if !follow {
				continue
			}
			page, _, err := jobs.ListPage(ctx, o, strconv.FormatInt(after, 10))
			if err != nil {
				continue // the next tick tries again; the watches go on
			}
			for _, j := range page {
				after = max(after, j.GetId())
				if ev.send("job", listJob(j)) != nil {
					return
				}
				if !sdk.IsTerminal(j.GetStatus()) {
					watch(j.GetId())
				}
			}
		}
	}
}

// events writes server-sent events.
type events struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newEvents(w http.ResponseWriter) *events {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	e := &events{w: w, rc: http.NewResponseController(w)}
	_ = e.rc.Flush()
	return e
}

func (e *events) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return e.rc.Flush()
}

// ping keeps idle connections (and proxies between) open.
func (e *events) ping() error {
	if _, err := fmt.Fprint(e.w, ": ping\n\n"); err != nil {
		return err
	}
	return e.rc.Flush()
}
