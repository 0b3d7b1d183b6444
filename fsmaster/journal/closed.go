package journal

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/alluvium/alluvium/api"
)

// ReplayClosed is the read-only view of a journal for the secondary
// checkpointer (another process on the same host): it calls fn, in order,
// for every entry with sequence > after in the CLOSED segments of the
// journal in dir (the open one belongs to the master), checking every
// entry, and returns the last sequence it delivered (after if none). It
// takes no lock. It is an error if entry after+1 is gone (deleted after a
// checkpoint) while later closed segments exist.
func ReplayClosed(ctx context.Context, dir string, after int64, fn func(*api.JournalEntry) error) (last int64, err error) {
	logsDir := filepath.Join(dir, logsDirName)
	segs, _, _, err := listSegments(logsDir)
	if err != nil {
		return after, err
	}
	last = after
	for _, s := range segs {
		if !s.Closed {
			break // only the newest can be open; nothing after it is closed
		}
		if s.Last <= last {
			continue
		}
		if s.First > last+1 {
			return last, fmt.Errorf("journal: entries %d..%d are not in %s (deleted after a checkpoint, or lost); start from a newer checkpoint",
				last+1, s.First-1, logsDir)
		}
		err := replaySegmentFile(ctx, s, last+1, s.Last, func(e *api.JournalEntry) error {
			if err := fn(e); err != nil {
				return err
			}
			last = e.Sequence
			return nil
		})
		if err != nil {
			return last, err
		}
	}
	return last, nil
}
