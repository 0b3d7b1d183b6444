// Command noop is a plan plugin that does next to nothing: the benchmark
// of a plugin call's overhead (plans/plugin) runs it, and the package's
// tests drive it through a task's args ("wait": until cancelled; "hang":
// ignoring cancels; "fail": an error with a result; "progress": a call
// back to the host first, then done; anything else: done, its args as
// output) and a job's config (a number: Plan hands out that
// many batches of one task, the cursor counting them).
package main

import (
	"context"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/sdk/planplugin"
)

type noop struct{}

func (noop) Info() planplugin.Info {
	return planplugin.Info{Name: "noop-bench", Version: "1", Description: "does nothing"}
}
func (noop) Validate(_ context.Context, _ planplugin.Host, c []byte) (planplugin.Valid, error) {
	return planplugin.Valid{Config: c}, nil
}
func (noop) Plan(_ context.Context, _ planplugin.Host, j planplugin.Job, _ int) (planplugin.Batch, error) {
	n, _ := strconv.Atoi(string(j.Config))
	at, _ := strconv.Atoi(string(j.Cursor))
	if at >= n {
		return planplugin.Batch{Done: true}, nil
	}
	return planplugin.Batch{Tasks: []planplugin.TaskSpec{{Args: []byte(strconv.Itoa(at))}},
		Cursor: []byte(strconv.Itoa(at + 1)), Done: at+1 >= n}, nil
}
func (noop) Run(ctx context.Context, h planplugin.Host, t planplugin.Task) (planplugin.Result, error) {
	switch string(t.Args) {
	case "progress":
		if err := h.Progress(ctx, 1); err != nil {
			return planplugin.Result{}, err
		}
	case "wait":
		<-ctx.Done()
		return planplugin.Result{}, ctx.Err()
	case "hang":
		select {}
	case "fail":
		return planplugin.Result{Bytes: 1, Output: []byte(`"failed"`)}, status.Error(codes.DataLoss, "fail: as asked")
	}
	return planplugin.Result{Bytes: int64(len(t.Args)), Output: t.Args}, nil
}
func (noop) Done(context.Context, planplugin.Host, planplugin.Job) (bool, error) { return true, nil }

func main() { planplugin.Serve(noop{}) }
