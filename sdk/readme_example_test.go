package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

// Example_readme is the README's "SDK in 20 lines", kept compiling here.
func Example_readme() {
	ctx := context.Background()
	src := strings.NewReader("a,b\n1,2\n")

	c, err := sdk.Dial(ctx, sdk.FromEnv()) // or WithMaster, WithJobMasters, WithToken, WithTLS, ...
	if err != nil {
		return
	}
	defer c.Close()

	w, err := c.Create(ctx, "/in/a.csv", sdk.CreateOptions{WriteType: api.WriteType_CACHE_THROUGH, Recursive: true})
	if err != nil {
		return
	}
	_, _ = io.Copy(w, src)
	_ = w.Close() // visible only once closed
	if _, err := c.Stat(ctx, "/nope"); errors.Is(err, sdk.ErrNotFound) {
		// typed errors
	}

	p := sdk.NewPipeline("nightly")
	p.Job("warm", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/in"}}, sdk.Retries(2))
	p.Job("copy", sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": "/in", "dst": "/out"}}, sdk.After("warm"))
	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": "/out"}}, sdk.After("copy"))
	report, err := p.Run(ctx, c) // a DAG; retries with backoff; cancelling ctx cancels the jobs
	fmt.Print(report)            // step, status, attempts, jobs, time
	_ = err
}
