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
		resp, err = c.ListJobs(ctx, &api.ListJobsRequest{Statuses: o.Statuses, Plan: o.Plan, PageSize: o.PageSize, PageToken: token})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return resp.GetJobs(), resp.GetNextPageToken(), nil
}
