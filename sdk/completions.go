package sdk

import (
	"context"
	"time"

	"github.com/alluvium/alluvium/api"
)

// CompletionEvent is a file completed through Alluvium (Source "write")
// or one that appeared or changed in a mount's UFS behind Alluvium's back
// (Source "ufs"; see WatchCompletions).
type CompletionEvent = api.CompletionEvent

// Completions is one answer of the completion feed.
type Completions struct {
	Events []*CompletionEvent
	// Cursor is where to resume (the after of the next call): every
	// completion up to it was looked at.
	Cursor int64
	// Oldest: the FS master keeps the completions after it.
	Oldest int64
}

// WatchOptions shape a WatchCompletions call.
type WatchOptions struct {
	// MaxEvents bounds the events of one answer (0: 1000; at most 10000).
	MaxEvents int
	// Wait is how long the FS master waits for a first event when none is
	// there (0: it answers at once); at most a minute, and kept below the
	// client's per-call timeout.
	Wait time.Duration
	// FromNow asks for no events but the cursor of now (after is
	// ignored): where a new consumer starts.
	FromNow bool
}

// WatchCompletions reads the completion feed: the files completed at or
// below path after the cursor after (0: from the oldest the FS master
// keeps), in journal order. A cursor is a journal sequence: it stays
// valid across restarts and failovers of the FS masters. A cursor older
// than the completions kept fails with an *Error whose Reason is
// api.ReasonCompletionsExpired: rescan path, then resume from the oldest
// kept (in the message). Events are limited to paths the caller may
// search.
func (c *Client) WatchCompletions(ctx context.Context, path string, after int64, o WatchOptions) (*Completions, error) {
	wait := o.Wait
	if limit := c.o.timeout - time.Second; wait > limit {
		wait = max(limit, 0)
	}
	var resp *api.WatchCompletionsResponse
	err := c.call(ctx, "watch completions", path, true, func(ctx context.Context) (err error) {
		resp, err = c.fs.WatchCompletions(ctx, &api.WatchCompletionsRequest{
			Path: path, After: after, MaxEvents: int32(min(o.MaxEvents, 1<<30)), WaitMs: wait.Milliseconds(), FromNow: o.FromNow,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Completions{Events: resp.GetEvents(), Cursor: resp.GetCursor(), Oldest: resp.GetOldest()}, nil
}
