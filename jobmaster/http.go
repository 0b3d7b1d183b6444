package jobmaster

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/rpc"
)

// httpServer is the job master's http port: /healthz, /metrics and the JSON
// job API. Reads come from this node's FSM (a follower may lag the leader by
// a few milliseconds).
type httpServer struct {
	*rpc.HTTPServer
	addr string
}

func (s *Server) startHTTP() (*httpServer, error) {
	h := rpc.NewHTTPServerWith(s.srvOpts, s.healthy)
	s.m.register(h.Registry)
	h.Mux.HandleFunc("/api/v1/jobs", s.httpListJobs)
	h.Mux.HandleFunc("/api/v1/jobs/", s.httpGetJob)
	h.Mux.HandleFunc("/api/v1/pipelines", s.httpListPipelines)
	h.Mux.HandleFunc("/api/v1/policies", s.httpListPolicies)
	h.Mux.HandleFunc("/api/v1/pipelines/", s.httpGetPipeline)
	h.Mux.HandleFunc("/api/v1/leader", func(w http.ResponseWriter, r *http.Request) {
		rpc.WriteJSON(w, http.StatusOK, s.leaderInfo())
	})
	ln, err := rpc.Listen(s.cfg.JobMaster.BindHost, s.cfg.JobMaster.HTTPPort)
	if err != nil {
		return nil, fmt.Errorf("jobmaster http: %w", err)
	}
	hs := &httpServer{HTTPServer: h, addr: ln.Addr().String()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := h.Serve(ln); err != nil {
			s.log.Error("jobmaster http server stopped", zap.Error(err))
		}
	}()
	return hs, nil
}

func (h *httpServer) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return h.HTTPServer.Shutdown(ctx)
}

// healthy: serving, and a leader is known.
func (s *Server) healthy() error {
	if _, id := s.raft.LeaderWithID(); id == "" {
		return fmt.Errorf("no job master leader")
	}
	return nil
}

// pageQuery reads a listing's order (newest or oldest) and pageSize.
func pageQuery(q url.Values) (newest bool, size int32, err error) {
	switch o := q.Get("order"); o {
	case "", "oldest":
	case "newest":
		newest = true
	default:
		return false, 0, status.Errorf(codes.InvalidArgument, "order %q: want newest or oldest", o)
	}
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return false, 0, status.Errorf(codes.InvalidArgument, "pageSize %q: not a number from %d to %d", v, math.MinInt32, math.MaxInt32)
		}
		size = int32(n)
	}
	return newest, size, nil
}

// GET /api/v1/jobs?status=RUNNING,FAILED&plan=load&submitter=u&policy=p&order=newest&pageSize=100&pageToken=...
func (s *Server) httpListJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &api.ListJobsRequest{Plan: q.Get("plan"), PageToken: q.Get("pageToken"), Submitter: q.Get("submitter"), Policy: q.Get("policy")}
	var err error
	if req.NewestFirst, req.PageSize, err = pageQuery(q); err != nil {
		rpc.WriteError(w, err)
		return
	}
	for _, st := range strings.Split(q.Get("status"), ",") {
		if st == "" {
			continue
		}
		v, ok := jobview.ParseStatus(st)
		if !ok {
			rpc.WriteError(w, status.Errorf(codes.InvalidArgument, "status %q: want CREATED, RUNNING, COMPLETED, FAILED or CANCELED", st))
			return
		}
		req.Statuses = append(req.Statuses, v)
	}
	resp, err := s.listJobs(req, s.viewerOf(r.Context()))
	if err != nil {
		rpc.WriteError(w, err)
		return
	}
	out := struct {
		Jobs          []jobview.Job `json:"jobs"`
		NextPageToken string        `json:"nextPageToken,omitempty"`
	}{Jobs: []jobview.Job{}, NextPageToken: resp.NextPageToken}
	for _, j := range resp.Jobs {
		out.Jobs = append(out.Jobs, jobview.FromInfo(j))
	}
	rpc.WriteJSON(w, http.StatusOK, out)
}

// GET /api/v1/jobs/{id}?verbose=true
func (s *Server) httpGetJob(w http.ResponseWriter, r *http.Request) {
	idStr := strings.TrimPrefix(r.URL.Path, "/api/v1/jobs/")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		rpc.WriteError(w, status.Errorf(codes.InvalidArgument, "job id %q: not a number", idStr))
		return
	}
	verbose, _ := strconv.ParseBool(r.URL.Query().Get("verbose"))
	if _, err := s.visibleJob(r.Context(), "job", id); err != nil {
		rpc.WriteError(w, err)
		return
	}
	info, err := s.jobInfo(id, verbose)
	if err != nil {
		rpc.WriteError(w, err)
		return
	}
	rpc.WriteJSON(w, http.StatusOK, jobview.FromInfo(info))
}

// GET /api/v1/pipelines?status=RUNNING,FAILED&name=n&policy=p&order=newest&pageSize=100&pageToken=...
func (s *Server) httpListPipelines(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &api.ListPipelinesRequest{Name: q.Get("name"), Policy: q.Get("policy"), PageToken: q.Get("pageToken")}
	var err error
	if req.NewestFirst, req.PageSize, err = pageQuery(q); err != nil {
		rpc.WriteError(w, err)
		return
	}
	for _, st := range strings.Split(q.Get("status"), ",") {
		if st == "" {
			continue
		}
		v, ok := api.PipelineRun_Status_value[strings.ToUpper(st)]
		if !ok || v == 0 {
			rpc.WriteError(w, status.Errorf(codes.InvalidArgument, "status %q: want RUNNING, SUCCEEDED, FAILED or CANCELED", st))
			return
		}
		req.Statuses = append(req.Statuses, api.PipelineRun_Status(v))
	}
	resp, err := s.listPipelines(req, s.viewerOf(r.Context()))
	if err != nil {
		rpc.WriteError(w, err)
		return
	}
	out := struct {
		Pipelines     []jobview.Pipeline `json:"pipelines"`
		NextPageToken string             `json:"nextPageToken,omitempty"`
	}{Pipelines: []jobview.Pipeline{}, NextPageToken: resp.NextPageToken}
	for _, p := range resp.Runs {
		out.Pipelines = append(out.Pipelines, jobview.FromRun(p))
	}
	rpc.WriteJSON(w, http.StatusOK, out)
}

// GET /api/v1/policies: the policies the caller sees, as 'policy ls
// --output json' prints them (an event policy with its trigger, feed
// cursor and counts).
func (s *Server) httpListPolicies(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Policies []jobview.Policy `json:"policies"`
	}{Policies: []jobview.Policy{}}
	for _, p := range s.visiblePolicies(r.Context()) {
		out.Policies = append(out.Policies, jobview.FromPolicy(p))
	}
	rpc.WriteJSON(w, http.StatusOK, out)
}

// GET /api/v1/pipelines/{id}
func (s *Server) httpGetPipeline(w http.ResponseWriter, r *http.Request) {
	idStr := strings.TrimPrefix(r.URL.Path, "/api/v1/pipelines/")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		rpc.WriteError(w, status.Errorf(codes.InvalidArgument, "pipeline run id %q: not a number", idStr))
		return
	}
	run, err := s.visibleRun(r.Context(), "pipeline", id)
	if err != nil {
		rpc.WriteError(w, err)
		return
	}
	rpc.WriteJSON(w, http.StatusOK, jobview.FromRun(run))
}

// metrics are the job master's Prometheus figures.
type metrics struct {
	s            *Server
	leader       prometheus.Gauge
	tasksDone    prometheus.Counter
	tasksRate    prometheus.Gauge
	applyLatency prometheus.Histogram
	perEntry     prometheus.Histogram
	updates      prometheus.Counter
	entries      prometheus.Counter
	workersLost  prometheus.Counter
	// pollTimer times job worker polls that got nothing, beyond the wait
	// they asked for (server-side: what a worker sees as overrun).
	pollTimer *rpc.CallTimer
	done      atomic.Uint64
	nUpdates  atomic.Uint64
	nEntries  atomic.Uint64
}

func (m *metrics) addDone(n int) {
	if n > 0 {
		m.tasksDone.Add(float64(n))
		m.done.Add(uint64(n))
	}
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		s:         s,
		leader:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "alluvium_jobmaster_is_leader", Help: "1 while this job master leads the raft group."}),
		tasksDone: prometheus.NewCounter(prometheus.CounterOpts{Name: "alluvium_jobmaster_tasks_completed_total", Help: "Tasks completed while this job master led."}),
		tasksRate: prometheus.NewGauge(prometheus.GaugeOpts{Name: "alluvium_jobmaster_tasks_per_second", Help: "Tasks completed per second (5s average)."}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "alluvium_jobmaster_raft_apply_seconds", Help: "Time from raft Apply to the entry being committed and applied.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		perEntry: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "alluvium_jobmaster_task_updates_per_raft_entry", Help: "Task updates batched into one raft entry.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{Name: "alluvium_jobmaster_task_updates_total", Help: "Task updates written to raft."}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{Name: "alluvium_jobmaster_task_update_entries_total", Help: "Raft entries carrying task updates."}),
		pollTimer: rpc.NewCallTimer("alluvium_jobmaster_worker_poll_overrun_seconds",
			"Job worker long polls that got nothing: server-side time beyond the wait asked for, from the call's arrival (from=arrival: queueing included) or of the handler alone (from=handler)."),
		workersLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alluvium_jobmaster_workers_lost_total", Help: "Job workers this job master declared LOST while it led (silent past their TTL, or at the FS master's word).",
		}),
	}
}

func (m *metrics) observeBatch(n int, took time.Duration) {
	m.perEntry.Observe(float64(n))
	m.updates.Add(float64(n))
	m.entries.Inc()
	m.nUpdates.Add(uint64(n))
	m.nEntries.Add(1)
}

func (m *metrics) register(reg *prometheus.Registry) {
	s := m.s
	reg.MustRegister(m.leader, m.tasksDone, m.tasksRate, m.applyLatency, m.perEntry, m.updates, m.entries, m.workersLost, m.pollTimer.Collector())
	reg.MustRegister(&jobsCollector{s: s})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alluvium_jobmaster_raft_entries_per_fsync", Help: "Raft log entries written per log-store write (one fsync each), since start.",
	}, func() float64 {
		st := s.Stats()
		if st.LogWrites == 0 {
			return 0
		}
		return float64(st.LogEntries) / float64(st.LogWrites)
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "alluvium_jobmaster_raft_log_writes_total", Help: "Raft log-store writes (one bbolt commit, two fdatasyncs, each), since start.",
	}, func() float64 { return float64(s.Stats().LogWrites) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alluvium_jobmaster_raft_applied_entries_total", Help: "Raft entries applied to this node's FSM.",
	}, func() float64 { return float64(s.fsm.applied.Load()) }))
}

// jobsCollector reports jobs by status and the leader's queue depths.
type jobsCollector struct{ s *Server }

var (
	jobsDesc  = prometheus.NewDesc("alluvium_jobmaster_jobs", "Jobs kept, by status.", []string{"status"}, nil)
	queueDesc = prometheus.NewDesc("alluvium_jobmaster_queue_depth", "Leader queues: tasks waiting for a worker (unplaced), handed out awaiting dispatch (claimed), running, and task updates waiting for raft (updates).", []string{"queue"}, nil)
	liveDesc  = prometheus.NewDesc("alluvium_jobmaster_job_workers", "Job workers known, by state.", []string{"state"}, nil)
)

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- queueDesc
	ch <- liveDesc
}

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[api.JobInfo_Status]int{}
	workers := map[api.WorkerState]int{}
	c.s.fsm.view(func(st *state) {
		st.jobs.Ascend(func(j *jobRec) bool { counts[j.Status]++; return true })
		st.workers.Ascend(func(w *workerRec) bool { workers[w.State]++; return true })
	})
	for _, st := range []api.JobInfo_Status{api.JobInfo_CREATED, api.JobInfo_RUNNING, api.JobInfo_COMPLETED, api.JobInfo_FAILED, api.JobInfo_CANCELED} {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[st]), jobview.Status(st))
	}
	for _, st := range []api.WorkerState{api.WorkerState_LIVE, api.WorkerState_LOST} {
		ch <- prometheus.MustNewConstMetric(liveDesc, prometheus.GaugeValue, float64(workers[st]), st.String())
	}
	if ls := c.s.leader.Load(); ls != nil {
		bs := ls.broker.stats()
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(bs.unplaced), "unplaced")
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(bs.claimed), "claimed")
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(bs.running), "running")
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(ls.coll.depth()), "updates")
	}
}

// sample keeps the tasks/s gauge: an exponential average over ~5s.
func (m *metrics) sample(stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last float64
	rate := 0.0
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			cur := float64(m.done.Load())
			d := cur - last
			last = cur
			rate = 0.8*rate + 0.2*d
			m.tasksRate.Set(rate)
		}
	}
}
