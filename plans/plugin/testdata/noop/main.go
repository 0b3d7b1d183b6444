// Command noop is a plan plugin that does nothing: the benchmark of a
// plugin call's overhead (plans/plugin) runs it.
package main

import (
	"context"

	"github.com/alluvium/alluvium/sdk/planplugin"
)

type noop struct{}

func (noop) Info() planplugin.Info {
	return planplugin.Info{Name: "noop-bench", Version: "1", Description: "does nothing"}
}
func (noop) Validate(_ context.Context, _ planplugin.Host, c []byte) (planplugin.Valid, error) {
	return planplugin.Valid{Config: c}, nil
}
func (noop) Plan(context.Context, planplugin.Host, planplugin.Job, int) (planplugin.Batch, error) {
	return planplugin.Batch{Done: true}, nil
}
func (noop) Run(context.Context, planplugin.Host, planplugin.Task) (planplugin.Result, error) {
	return planplugin.Result{}, nil
}
func (noop) Done(context.Context, planplugin.Host, planplugin.Job) (bool, error) { return true, nil }

func main() { planplugin.Serve(noop{}) }
