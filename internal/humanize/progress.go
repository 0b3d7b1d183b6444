package humanize

import (
	"fmt"

	"github.com/alluvium/alluvium/api"
)

// Progress is a job's advance in one line: "3/10 tasks done, 1 failed,
// 1.5 GiB of 4.0 GiB" (the bytes only once the job counts any).
func Progress(j *api.JobInfo) string {
	s := fmt.Sprintf("%d/%d tasks done, %d failed", j.GetTasksDone(), j.GetTasksTotal(), j.GetTasksFailed())
	if j.GetBytesTotal() > 0 || j.GetBytesDone() > 0 {
		s += fmt.Sprintf(", %s of %s", Bytes(j.GetBytesDone()), Bytes(j.GetBytesTotal()))
	}
	return s
}
