package sdk

import (
	"context"

	"github.com/alluvium/alluvium/api"
)

// ListPage returns one page of jobs (o.PageSize of them, 0: the server's
// default) starting at token ("" for the first), and the token of the next
// page ("" after the last). Servers that hand pages to their own clients
// (the REST proxy) use it instead of List.
func (j *Jobs) ListPage(ctx context.Context, o ListJobsOptions, token string) ([]*JobInfo, string, error) {
	var resp *api.ListJobsResponse
	err := j.call(ctx, "job ls", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.ListJobs(ctx, o.request(token))
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return resp.GetJobs(), resp.GetNextPageToken(), nil
}

// Count returns how many jobs match o's filters (o.PageSize is ignored).
// It walks every job the master keeps: call it for a summary, not per job.
func (j *Jobs) Count(ctx context.Context, o ListJobsOptions) (int64, error) {
	req := o.request("")
	req.PageSize, req.CountTotal = 1, true
	var resp *api.ListJobsResponse
	err := j.call(ctx, "job count", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.ListJobs(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.GetTotal(), nil
}

// WorkerTasks lists the job workers the leader knows, each with the tasks
// it is running (at most 100 each; only of the jobs the caller may see).
func (j *Jobs) WorkerTasks(ctx context.Context) ([]*api.JobWorkerInfo, error) {
	var resp *api.ListJobWorkersResponse
	err := j.call(ctx, "job workers", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.ListJobWorkers(ctx, &api.ListJobWorkersRequest{IncludeTasks: true})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetWorkers(), nil
}
