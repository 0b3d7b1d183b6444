package proxy

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/sdk"
)

// submitRequest is the body of POST /api/v1/jobs.
type submitRequest struct {
	Plan      string          `json:"plan"`
	Config    json.RawMessage `json:"config"`
	RequestID string          `json:"requestId"`
}

// jobList is the body of GET /api/v1/jobs, as the job master's own
// /api/v1/jobs answers.
type jobList struct {
	Jobs          []sdk.JobJSON `json:"jobs"`
	NextPageToken string        `json:"nextPageToken,omitempty"`
}

// serveJobs drives the job service with the JSON of `--output json`:
//
//	POST   /api/v1/jobs                {"plan": "load", "config": {...}, "requestId": "..."} → the job
//	GET    /api/v1/jobs?status=RUNNING,FAILED&plan=load&pageSize=N&pageToken=T → {"jobs": [...], "nextPageToken": ...}
//	GET    /api/v1/jobs/{id}?verbose=true → the job
//	POST   /api/v1/jobs/{id}/cancel    → the job (CANCELED once its tasks stop)
//	DELETE /api/v1/jobs/{id}           → same as cancel
func (a *restAPI) serveJobs(w http.ResponseWriter, r *http.Request, rt route) error {
	jobs, err := a.c.Jobs()
	if err != nil {
		return restErrorf(codes.Unavailable, "%v", err)
	}
	ctx := r.Context()
	switch {
	case !rt.hasID && r.Method == http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, maxOptionsBody+1))
		if err != nil {
			return restErrorf(codes.InvalidArgument, "reading the job: %v", err)
		}
		if len(b) > maxOptionsBody {
			return restErrorf(codes.InvalidArgument, "job body larger than %d bytes", maxOptionsBody)
		}
		var req submitRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return restErrorf(codes.InvalidArgument, `job body: want {"plan": "load", "config": {...}}: %v`, err)
		}
		if req.Plan == "" {
			return restErrorf(codes.InvalidArgument, `job body: "plan" is required (load, persist, replicate, move, copy, sync)`)
		}
		if len(req.Config) == 0 || string(req.Config) == "null" {
			return restErrorf(codes.InvalidArgument, `job body: "config" is required, e.g. {"path": "/data"}`)
		}
		var opts []sdk.SubmitOption
		if req.RequestID != "" {
			opts = append(opts, sdk.WithRequestID(req.RequestID))
		}
		id, e := jobs.Submit(ctx, req.Plan, req.Config, opts...)
		if e != nil {
			return e
		}
		info, e := jobs.Get(ctx, id, false)
		if e != nil {
			return e
		}
		writeJSON(w, http.StatusOK, sdk.ToJSON(info))
	case !rt.hasID && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		q := r.URL.Query()
		o := sdk.ListJobsOptions{Plan: q.Get("plan")}
		for _, s := range strings.Split(q.Get("status"), ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			st, ok := parseJobStatus(s)
			if !ok {
				return restErrorf(codes.InvalidArgument, "status %q: want CREATED, RUNNING, COMPLETED, FAILED or CANCELED", s)
			}
			o.Statuses = append(o.Statuses, st)
		}
		if v := q.Get("pageSize"); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 {
				return restErrorf(codes.InvalidArgument, "pageSize %q: want a number from 0 to %d", v, math.MaxInt32)
			}
			o.PageSize = int32(n)
		}
		out := jobList{Jobs: []sdk.JobJSON{}}
		page, next, e := jobs.ListPage(ctx, o, q.Get("pageToken"))
		if e != nil {
			return e
		}
		for _, info := range page {
			out.Jobs = append(out.Jobs, sdk.ToJSON(info))
		}
		out.NextPageToken = next
		writeJSON(w, http.StatusOK, out)
	case rt.hasID && rt.action == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		verbose, _ := strconv.ParseBool(r.URL.Query().Get("verbose"))
		info, e := jobs.Get(ctx, rt.id, verbose)
		if e != nil {
			return e
		}
		writeJSON(w, http.StatusOK, sdk.ToJSON(info))
	case rt.hasID && (rt.action == "cancel" && r.Method == http.MethodPost || rt.action == "" && r.Method == http.MethodDelete):
		if e := jobs.Cancel(ctx, rt.id); e != nil {
			return e
		}
		info, e := jobs.Get(ctx, rt.id, false)
		if e != nil {
			return e
		}
		writeJSON(w, http.StatusOK, sdk.ToJSON(info))
	default:
		allowed := "GET, POST"
		if rt.hasID && rt.action == "" {
			allowed = "GET, DELETE"
		} else if rt.hasID {
			allowed = "POST"
		}
		return methodNotAllowed(w, r, allowed)
	}
	return nil
}

func parseJobStatus(s string) (sdk.JobStatus, bool) {
	for _, st := range []sdk.JobStatus{sdk.JobCreated, sdk.JobRunning, sdk.JobCompleted, sdk.JobFailed, sdk.JobCanceled} {
		if strings.EqualFold(strings.TrimPrefix(st.String(), "STATUS_"), s) {
			return st, true
		}
	}
	return 0, false
}
