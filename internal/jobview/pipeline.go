package jobview

import (
	"encoding/json"

	"github.com/alluvium/alluvium/api"
)

// Pipeline is a pipeline run as JSON: `alluvium pipeline ... --output
// json` and the job master's /api/v1/pipelines print it.
type Pipeline struct {
	ID          int64           `json:"id"`
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	Error       string          `json:"error,omitempty"`
	Description string          `json:"description,omitempty"`
	Params      json.RawMessage `json:"params,omitempty"`
	Submitter   string          `json:"submitter,omitempty"`
	RequestID   string          `json:"requestId,omitempty"`
	Trigger     Trigger         `json:"trigger"`
	Parallelism int32           `json:"parallelism,omitempty"`
	FailFast    bool            `json:"failFast,omitempty"`
	CreatedMs   int64           `json:"createdMs"`
	UpdatedMs   int64           `json:"updatedMs"`
	FinishedMs  int64           `json:"finishedMs,omitempty"`
	Steps       []Step          `json:"steps"`
}

// Trigger is what started a run.
type Trigger struct {
	Kind          string `json:"kind"` // MANUAL, CRON, EVENTS, RUN_NOW
	Policy        string `json:"policy,omitempty"`
	ScheduledMs   int64  `json:"scheduledMs,omitempty"`
	Events        int64  `json:"events,omitempty"`
	FirstSequence int64  `json:"firstSequence,omitempty"`
	LastSequence  int64  `json:"lastSequence,omitempty"`
}

// Step is one step of a run.
type Step struct {
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	Plan        string          `json:"plan"`
	Config      json.RawMessage `json:"config,omitempty"`
	After       []string        `json:"after,omitempty"`
	OnFailure   bool            `json:"onFailure,omitempty"`
	Attempt     int32           `json:"attempt"`
	MaxAttempts int32           `json:"maxAttempts"`
	JobID       int64           `json:"jobId,omitempty"`
	JobIDs      []int64         `json:"jobIds,omitempty"`
	StartedMs   int64           `json:"startedMs,omitempty"`
	FinishedMs  int64           `json:"finishedMs,omitempty"`
	RetryAtMs   int64           `json:"retryAtMs,omitempty"`
	DeadlineMs  int64           `json:"deadlineMs,omitempty"`
	Error       string          `json:"error,omitempty"`
	Reason      string          `json:"reason,omitempty"`
}

// FromRun converts a PipelineRun.
func FromRun(r *api.PipelineRun) Pipeline {
	t := r.GetTrigger()
	v := Pipeline{
		ID: r.GetId(), Name: r.GetName(), Status: r.GetStatus().String(), Error: r.GetError(), Description: r.GetDescription(),
		Submitter: r.GetSubmitter(), RequestID: r.GetRequestId(), Parallelism: r.GetParallelism(), FailFast: r.GetFailFast(),
		CreatedMs: r.GetCreatedMs(), UpdatedMs: r.GetUpdatedMs(), FinishedMs: r.GetFinishedMs(),
		Trigger: Trigger{Kind: t.GetKind().String(), Policy: t.GetPolicy(), ScheduledMs: t.GetScheduledMs(), Events: t.GetEvents(),
			FirstSequence: t.GetFirstSequence(), LastSequence: t.GetLastSequence()},
		Steps: []Step{},
	}
	if t == nil {
		v.Trigger.Kind = api.PipelineTrigger_MANUAL.String()
	}
	if json.Valid([]byte(r.GetParamsJson())) {
		v.Params = json.RawMessage(r.GetParamsJson())
	}
	for _, s := range r.GetSteps() {
		st := Step{
			Name: s.GetName(), Status: s.GetStatus().String(), Plan: s.GetPlan(), After: s.GetAfter(), OnFailure: s.GetOnFailure(),
			Attempt: s.GetAttempt(), MaxAttempts: max(s.GetRetry().GetAttempts(), 1), JobID: s.GetJobId(), JobIDs: s.GetJobIds(),
			StartedMs: s.GetStartedMs(), FinishedMs: s.GetFinishedMs(), RetryAtMs: s.GetRetryAtMs(), DeadlineMs: s.GetDeadlineMs(),
			Error: s.GetError(), Reason: s.GetReason(),
		}
		if json.Valid([]byte(s.GetConfigJson())) {
			st.Config = json.RawMessage(s.GetConfigJson())
		}
		v.Steps = append(v.Steps, st)
	}
	return v
}
