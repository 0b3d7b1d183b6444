// Command warmup-copy-persist is the SDK's pipeline example: it warms a
// tree into the cache (a load job), copies it to a new path (a copy job),
// persists the copy to its under storage (a persist job), then checks the
// result with a Go step — four steps, each after the one before, retried
// with backoff, cancelled (jobs too) on Ctrl-C, with a summary table at the
// end.
//
// Against `alluvium local`:
//
//	alluvium local --home /tmp/alluvium --ufs /tmp/ufs &
//	source /tmp/alluvium/env        # ALLUVIUM_MASTER, ALLUVIUM_JOB_MASTER, ALLUVIUM_TOKEN
//	go run ./sdk/examples/warmup-copy-persist -src /raw -dst /curated
//
// It exits 0 when every step succeeded, 1 otherwise, 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

// copyConfig and persistConfig are the copy and persist plans' configs as
// JSON (DESIGN.md); any struct or map with these fields will do.
type copyConfig struct {
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	Overwrite bool   `json:"overwrite,omitempty"`
	Checksum  bool   `json:"checksum,omitempty"`
}

type persistConfig struct {
	Path string `json:"path"`
}

func main() {
	src := flag.String("src", "", "tree to warm up and copy (required)")
	dst := flag.String("dst", "", "where the copy goes (required)")
	replication := flag.Int("replication", 1, "cached copies of each block of -src")
	overwrite := flag.Bool("overwrite", false, "replace files that exist under -dst")
	retries := flag.Int("retries", 2, "retries of a failed step (exponential backoff from 2s)")
	timeout := flag.Duration("timeout", 0, "give up (and cancel the running jobs) after this long; 0: never")
	flag.Parse()
	if *src == "" || *dst == "" || *replication < 1 || *retries < 0 {
		fmt.Fprintln(os.Stderr, "usage: warmup-copy-persist -src PATH -dst PATH [-replication N] [-overwrite] [-retries N] [-timeout D]")
		os.Exit(2)
	}

	// Ctrl-C or SIGTERM cancels the context: the pipeline cancels its
	// running job on the job master and stops.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	c, err := sdk.Dial(ctx, sdk.FromEnv())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()

	p := sdk.NewPipeline("warmup-copy-persist",
		sdk.DefaultRetry(sdk.RetryPolicy{Attempts: *retries + 1, Backoff: 2 * time.Second}),
		sdk.OnEvent(sdk.LogEvents(os.Stderr)))
	p.Job("warm-up", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: *src, Replication: *replication}})
	p.Job("copy", sdk.JobSpec{Plan: "copy", Config: copyConfig{Src: *src, Dst: *dst, Overwrite: *overwrite}}, sdk.After("warm-up"))
	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: persistConfig{Path: *dst}}, sdk.After("copy"))
	p.Func("check", func(ctx context.Context) error { return check(ctx, c, *src, *dst) }, sdk.After("persist"))

	report, err := p.Run(ctx, c)
	if report != nil {
		fmt.Print(report)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// check compares the two trees: as many files and bytes under dst as under
// src, and every file under dst persisted.
func check(ctx context.Context, c *sdk.Client, src, dst string) error {
	srcFiles, srcBytes, _, err := walk(ctx, c, src)
	if err != nil {
		return err
	}
	dstFiles, dstBytes, unpersisted, err := walk(ctx, c, dst)
	if err != nil {
		return err
	}
	switch {
	case srcFiles != dstFiles || srcBytes != dstBytes:
		return fmt.Errorf("check: %s has %d files, %d bytes; %s has %d files, %d bytes", src, srcFiles, srcBytes, dst, dstFiles, dstBytes)
	case unpersisted != "":
		// Not worth a retry: the persist job said it was done.
		return sdk.Permanent(errors.New("check: " + unpersisted + " is not persisted"))
	}
	fmt.Fprintf(os.Stderr, "check: %s and %s both hold %d files, %d bytes; all persisted\n", src, dst, dstFiles, dstBytes)
	return nil
}

func walk(ctx context.Context, c *sdk.Client, root string) (files, bytes int64, unpersisted string, err error) {
	for f, err := range c.List(ctx, root, sdk.ListOptions{Recursive: true}) {
		if err != nil {
			return 0, 0, "", err
		}
		if f.GetFolder() {
			continue
		}
		files++
		bytes += f.GetLength()
		if f.GetPersistenceState() != api.PersistenceState_PERSISTED && unpersisted == "" {
			unpersisted = f.GetPath()
		}
	}
	return files, bytes, unpersisted, nil
}
