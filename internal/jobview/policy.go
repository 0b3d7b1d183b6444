package jobview

import (
	"encoding/json"

	"github.com/alluvium/alluvium/api"
)

// Policy is a cron policy as JSON: `alluvium policy ls --output json` and
// the web console print it.
type Policy struct {
	Name             string          `json:"name"`
	Cron             string          `json:"cron"`
	Plan             string          `json:"plan"`
	Config           json.RawMessage `json:"config"`
	Enabled          bool            `json:"enabled"`
	Overlap          string          `json:"overlap"`
	CatchUp          bool            `json:"catchUp"`
	CreatedMs        int64           `json:"createdMs"`
	NextRunMs        int64           `json:"nextRunMs,omitempty"`
	LastRunMs        int64           `json:"lastRunMs,omitempty"`
	LastLaunchMs     int64           `json:"lastLaunchMs,omitempty"`
	LastJobID        int64           `json:"lastJobId,omitempty"`
	LastJobStatus    string          `json:"lastJobStatus,omitempty"`
	Runs             int64           `json:"runs"`
	Skipped          int64           `json:"skipped"`
	QueuedMs         int64           `json:"queuedMs,omitempty"`
	PendingRequestID string          `json:"pendingRequestId,omitempty"`
	// A policy that fires a pipeline: its name, and its last run.
	Pipeline           string `json:"pipeline,omitempty"`
	LastPipelineRun    int64  `json:"lastPipelineRun,omitempty"`
	LastPipelineStatus string `json:"lastPipelineStatus,omitempty"`
	// An event policy: the directory it watches, its debounce window and
	// batch bound, the completion feed's cursor it has handled up to, the
	// files launched and skipped, and those of the launch being submitted.
	OnCreate      string `json:"onCreate,omitempty"`
	DebounceMs    int64  `json:"debounceMs,omitempty"`
	BatchMax      int32  `json:"batchMax,omitempty"`
	EventCursor   int64  `json:"eventCursor,omitempty"`
	Events        int64  `json:"events,omitempty"`
	SkippedEvents int64  `json:"skippedEvents,omitempty"`
	PendingEvents int    `json:"pendingEvents,omitempty"`
}

// FromPolicy converts a PolicyInfo.
func FromPolicy(p *api.PolicyInfo) Policy {
	v := Policy{
		Name: p.GetName(), Cron: p.GetCron(), Plan: p.GetPlan(), Enabled: p.GetEnabled(), Overlap: p.GetOverlap(),
		CatchUp: p.GetCatchUp(), CreatedMs: p.GetCreatedMs(), NextRunMs: p.GetNextRunMs(), LastRunMs: p.GetLastRunMs(),
		LastLaunchMs: p.GetLastLaunchMs(), LastJobID: p.GetLastJobId(), Runs: p.GetRuns(), Skipped: p.GetSkipped(),
		QueuedMs: p.GetQueuedMs(), PendingRequestID: p.GetPendingRequestId(), LastJobStatus: LastJobStatus(p),
	}
	if p.GetOnCreate() != "" {
		v.OnCreate, v.DebounceMs, v.BatchMax, v.EventCursor = p.GetOnCreate(), p.GetDebounceMs(), p.GetBatchMax(), p.GetEventCursor()
		v.Events, v.SkippedEvents, v.PendingEvents = p.GetEvents(), p.GetSkippedEvents(), len(p.GetPendingEvents())
	}
	if d := p.GetPipeline(); d != nil {
		v.Pipeline, v.LastPipelineRun = d.GetName(), p.GetLastPipelineId()
		if v.LastPipelineRun != 0 {
			v.LastPipelineStatus = "GONE"
			if st := p.GetLastPipelineStatus(); st != api.PipelineRun_STATUS_UNSPECIFIED {
				v.LastPipelineStatus = st.String()
			}
		}
	}
	if json.Valid([]byte(p.GetConfigJson())) {
		v.Config = json.RawMessage(p.GetConfigJson())
	}
	return v
}

// LastJobStatus is the status of the policy's last job: "" without one,
// "GONE" once the job was compacted away.
func LastJobStatus(p *api.PolicyInfo) string {
	switch {
	case p.GetLastJobId() == 0:
		return ""
	case p.GetLastJobStatus() == api.JobInfo_STATUS_UNSPECIFIED:
		return "GONE"
	}
	return Status(p.GetLastJobStatus())
}
