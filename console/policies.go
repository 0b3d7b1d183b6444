package console

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/sdk"
)

// GET /ui/api/policies
func (c *Console) apiPolicies(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	pols, err := c.c.Policies()
	if err != nil {
		writeError(w, err)
		return
	}
	ps, err := pols.List(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []jobview.Policy{}
	for _, p := range ps {
		out = append(out, jobview.FromPolicy(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

// POST /ui/api/policies/{name}/{pause|resume|run}
func (c *Console) apiPolicyAction(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	name, action := r.PathValue("name"), r.PathValue("action")
	pols, err := c.c.Policies()
	if err != nil {
		writeError(w, err)
		return
	}
	var p *sdk.Policy
	switch action {
	case "pause":
		p, err = pols.Pause(ctx, name)
	case "resume":
		p, err = pols.Resume(ctx, name)
	case "run":
		var id int64
		if id, err = pols.RunNow(ctx, name); err == nil {
			writeJSON(w, http.StatusOK, map[string]int64{"jobId": id})
			return
		}
	default:
		writeError(w, &sdk.Error{Op: "policy " + action, Path: name, Code: codes.NotFound, Message: "no such action: want pause, resume or run"})
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, jobview.FromPolicy(p))
}

// ---- pipelines ----

// pipelineRun is one run of a pipeline, drawn as its DAG. Two kinds: runs
// the job master keeps (alluvium pipeline submit, policies that fire
// pipelines), which know their steps' edges (After), and runs of SDK
// pipelines (sdk.Pipeline, run in the client), recognised by the request
// ids their jobs carry (RUN/STEP/ATTEMPT): those know their steps and each
// step's jobs and state but not the edges, which only the SDK program
// holds, so the page lays their steps out by start.
type pipelineRun struct {
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Source  string         `json:"source"` // "cluster" (kept by the job master) or "sdk"
	Status  string         `json:"status"` // RUNNING, COMPLETED, FAILED, CANCELED (of the steps seen)
	Started int64          `json:"startedMs"`
	Ended   int64          `json:"endedMs,omitempty"`
	Steps   []pipelineStep `json:"steps"`
}

type pipelineStep struct {
	Name       string   `json:"name"`
	Plan       string   `json:"plan"`
	After      []string `json:"after"`  // steps it waits for (empty when unknown)
	Status     string   `json:"status"` // the state of its latest attempt's job
	Attempts   int      `json:"attempts"`
	Jobs       []int64  `json:"jobs"`
	Started    int64    `json:"startedMs"`
	Ended      int64    `json:"endedMs,omitempty"`
	BytesDone  int64    `json:"bytesDone"`
	BytesTotal int64    `json:"bytesTotal"`
}

// sdkRequestID matches the request ids of an SDK pipeline's jobs:
// NAME.RUN/STEP/ATTEMPT (NAME absent from SDKs before the console).
var sdkRequestID = regexp.MustCompile(`^(?:([^/]*)\.)?([0-9a-f]{16})/(.+)/([0-9]+)$`)

const (
	pipelineScanJobs = 2000 // newest jobs looked at for pipeline runs
	pipelineRuns     = 50   // runs shown
)

// GET /ui/api/pipelines: the newest runs the job master keeps, then the
// SDK runs found among the newest jobs, of what the user may see.
func (c *Console) apiPipelines(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	jobs, ok := c.jobs(w)
	if !ok {
		return
	}
	ps, err := c.c.Pipelines()
	if err != nil {
		writeError(w, err)
		return
	}
	kept, err := ps.List(ctx, sdk.ListPipelinesOptions{NewestFirst: true, Limit: pipelineRuns})
	if err != nil {
		writeError(w, err)
		return
	}
	out := []pipelineRun{}
	for _, k := range kept {
		out = append(out, keptRun(k))
	}
	runs := map[string]*pipelineRun{}
	var order []string
	steps := map[string]map[string]*pipelineStep{}
	token, seen := "", 0
	for seen < pipelineScanJobs {
		page, next, err := jobs.ListPage(ctx, sdk.ListJobsOptions{NewestFirst: true, PageSize: 1000}, token)
		if err != nil {
			writeError(w, err)
			return
		}
		for _, j := range page {
			seen++
			m := sdkRequestID.FindStringSubmatch(j.GetRequestId())
			if m == nil {
				continue
			}
			name, runID, stepName := m[1], m[1]+"."+m[2], m[3]
			if m[1] == "" {
				runID = m[2]
			}
			attempt, _ := strconv.Atoi(m[4])
			run := runs[runID]
			if run == nil {
				if len(runs) == pipelineRuns {
					continue
				}
				run = &pipelineRun{ID: runID, Name: name, Source: "sdk"}
				runs[runID] = run
				steps[runID] = map[string]*pipelineStep{}
				order = append(order, runID)
			}
			st := steps[runID][stepName]
			if st == nil {
				st = &pipelineStep{Name: stepName, After: []string{}}
				steps[runID][stepName] = st
			}
			st.Jobs = append(st.Jobs, j.GetId())
			if attempt >= st.Attempts {
				// Newest first: the first job seen of the highest attempt
				// is the step's current state.
				st.Attempts = attempt
				st.Plan, st.Status = j.GetPlan(), jobview.Status(j.GetStatus())
				st.BytesDone, st.BytesTotal, st.Ended = j.GetBytesDone(), j.GetBytesTotal(), j.GetFinishedMs()
			}
			if st.Started == 0 || j.GetCreatedMs() < st.Started {
				st.Started = j.GetCreatedMs()
			}
		}
		if token = next; token == "" {
			break
		}
	}
	for _, id := range order {
		run := runs[id]
		for _, st := range steps[id] {
			slices.Sort(st.Jobs)
			run.Steps = append(run.Steps, *st)
		}
		slices.SortFunc(run.Steps, func(a, b pipelineStep) int { return int(a.Jobs[0] - b.Jobs[0]) })
		run.Status = "COMPLETED"
		for _, st := range run.Steps {
			if run.Started == 0 || st.Started < run.Started {
				run.Started = st.Started
			}
			run.Ended = max(run.Ended, st.Ended)
			switch st.Status {
			case "CREATED", "RUNNING":
				run.Status = "RUNNING"
			case "FAILED", "CANCELED":
				if run.Status != "RUNNING" {
					run.Status = st.Status
				}
			}
		}
		if run.Status == "RUNNING" {
			run.Ended = 0
		}
		out = append(out, *run)
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out, "scanned": seen})
}

// keptRun is the page's view of a run the job master keeps.
func keptRun(k *sdk.PipelineRun) pipelineRun {
	run := pipelineRun{ID: strconv.FormatInt(k.GetId(), 10), Name: k.GetName(), Source: "cluster",
		Status: k.GetStatus().String(), Started: k.GetCreatedMs(), Ended: k.GetFinishedMs(), Steps: []pipelineStep{}}
	for _, st := range k.GetSteps() {
		run.Steps = append(run.Steps, pipelineStep{
			Name: st.GetName(), Plan: st.GetPlan(), After: append([]string{}, st.GetAfter()...),
			Status: st.GetStatus().String(), Attempts: int(st.GetAttempt()), Jobs: append([]int64{}, st.GetJobIds()...),
			Started: st.GetStartedMs(), Ended: st.GetFinishedMs(),
		})
	}
	return run
}
