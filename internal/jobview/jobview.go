// Package jobview is the JSON form of a job, shared by everything that
// prints one: `alluvium job ... --output json`, the job master's
// /api/v1/jobs, and the SDK (sdk.JobJSON). DESIGN.md fixes the first
// fields (id, plan, status, tasksTotal, tasksDone, tasksFailed, bytesTotal,
// bytesDone, error); the rest may grow.
package jobview

import (
	"encoding/json"
	"strings"

	"github.com/alluvium/alluvium/api"
)

// Job is one job as JSON.
type Job struct {
	ID           int64           `json:"id"`
	Plan         string          `json:"plan"`
	PlanVersion  string          `json:"planVersion,omitempty"`
	Status       string          `json:"status"`
	TasksTotal   int64           `json:"tasksTotal"`
	TasksDone    int64           `json:"tasksDone"`
	TasksFailed  int64           `json:"tasksFailed"`
	BytesTotal   int64           `json:"bytesTotal"`
	BytesDone    int64           `json:"bytesDone"`
	Error        string          `json:"error"`
	FilesTotal   int64           `json:"filesTotal"`
	FilesSkipped int64           `json:"filesSkipped"`
	BytesSkipped int64           `json:"bytesSkipped"`
	Deletes      int64           `json:"deletes"`
	DryRun       bool            `json:"dryRun,omitempty"`
	TasksRunning int64           `json:"tasksRunning"`
	PlanningDone bool            `json:"planningDone"`
	Round        int32           `json:"round,omitempty"`
	Config       json.RawMessage `json:"config,omitempty"`
	Submitter    string          `json:"submitter,omitempty"`
	RequestID    string          `json:"requestId,omitempty"`
	Policy       string          `json:"policy,omitempty"`
	PipelineRun  int64           `json:"pipelineRun,omitempty"`  // the pipeline run whose step it is
	PipelineStep string          `json:"pipelineStep,omitempty"` // that step
	CreatedMs    int64           `json:"createdMs"`
	UpdatedMs    int64           `json:"updatedMs"`
	FinishedMs   int64           `json:"finishedMs,omitempty"`
	Failed       []FailedPath    `json:"failed,omitempty"`
	Tasks        []Task          `json:"tasks,omitempty"`
}

// FailedPath is a path the job could not handle, with why.
type FailedPath struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// Task is one task of a job (verbose views only).
type Task struct {
	ID            int64  `json:"id"`
	Status        string `json:"status"`
	Attempt       int32  `json:"attempt"`
	WorkerID      int64  `json:"workerId,omitempty"`
	WorkerAddress string `json:"workerAddress,omitempty"`
	Description   string `json:"description,omitempty"`
	BytesTotal    int64  `json:"bytesTotal"`
	BytesDone     int64  `json:"bytesDone"`
	Error         string `json:"error,omitempty"`
	UpdatedMs     int64  `json:"updatedMs,omitempty"`
	// Result is what the task's last attempt reported, as its plan
	// writes it (exec: [{path, exit, output}] per file).
	Result json.RawMessage `json:"result,omitempty"`
}

// Status is a job status's name: CREATED, RUNNING, COMPLETED, FAILED,
// CANCELED.
func Status(s api.JobInfo_Status) string {
	return strings.TrimPrefix(s.String(), "STATUS_")
}

// TaskStatus is a task status's name.
func TaskStatus(s api.TaskInfo_Status) string {
	return strings.TrimPrefix(s.String(), "STATUS_")
}

// ParseStatus reads a job status name (any case); ok is false for an
// unknown one.
func ParseStatus(name string) (api.JobInfo_Status, bool) {
	v, ok := api.JobInfo_Status_value[strings.ToUpper(strings.TrimSpace(name))]
	if !ok || v == 0 {
		return 0, false
	}
	return api.JobInfo_Status(v), true
}

// FromInfo converts a JobInfo.
func FromInfo(i *api.JobInfo) Job {
	j := Job{
		ID: i.GetId(), Plan: i.GetPlan(), PlanVersion: i.GetPlanVersion(), Status: Status(i.GetStatus()),
		TasksTotal: i.GetTasksTotal(), TasksDone: i.GetTasksDone(), TasksFailed: i.GetTasksFailed(),
		BytesTotal: i.GetBytesTotal(), BytesDone: i.GetBytesDone(), Error: i.GetError(),
		FilesTotal: i.GetFilesTotal(), FilesSkipped: i.GetFilesSkipped(), BytesSkipped: i.GetBytesSkipped(),
		Deletes: i.GetDeletes(), DryRun: i.GetLimits().GetDryRun(),
		TasksRunning: i.GetTasksRunning(), PlanningDone: i.GetPlanningDone(), Round: i.GetRound(),
		Submitter: i.GetSubmitter(), RequestID: i.GetRequestId(), Policy: i.GetPolicy(),
		PipelineRun: i.GetPipelineRunId(), PipelineStep: i.GetPipelineStep(),
		CreatedMs: i.GetCreatedMs(), UpdatedMs: i.GetUpdatedMs(), FinishedMs: i.GetFinishedMs(),
	}
	if c := i.GetConfigJson(); c != "" && json.Valid([]byte(c)) {
		j.Config = json.RawMessage(c)
	}
	for _, f := range i.GetFailed() {
		j.Failed = append(j.Failed, FailedPath{Path: f.GetPath(), Error: f.GetError()})
	}
	for _, t := range i.GetTasks() {
		jt := Task{
			ID: t.GetTaskId(), Status: TaskStatus(t.GetStatus()), Attempt: t.GetAttempt(),
			WorkerID: t.GetWorkerId(), WorkerAddress: t.GetWorkerAddress(), Description: t.GetDescription(),
			BytesTotal: t.GetBytesTotal(), BytesDone: t.GetBytesDone(), Error: t.GetError(), UpdatedMs: t.GetUpdatedMs(),
		}
		if r := t.GetResult(); len(r) > 0 && json.Valid(r) {
			jt.Result = json.RawMessage(r)
		}
		j.Tasks = append(j.Tasks, jt)
	}
	return j
}
