package humanize

import (
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
)

func TestBytesRateProgress(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 29: "1.5 GiB", 5 << 40: "5.0 TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
		// What it prints reads back (to the precision printed).
		if back, err := ParseBytes(Bytes(n)); err != nil || n >= 1024 && (back < n*99/100 || back > n*101/100) || n < 1024 && back != n {
			t.Errorf("ParseBytes(Bytes(%d) = %q) = %d, %v", n, Bytes(n), back, err)
		}
	}
	if got := Rate(25<<20, 2*time.Second); got != "12.5 MiB/s" {
		t.Errorf("Rate = %q", got)
	}
	if got := Rate(0, time.Second) + Rate(5, 0); got != "" {
		t.Errorf("Rate of nothing = %q, want empty", got)
	}
	j := &api.JobInfo{TasksDone: 3, TasksTotal: 10, TasksFailed: 1, BytesDone: 3 << 29, BytesTotal: 4 << 30}
	if got := Progress(j); got != "3/10 tasks done, 1 failed, 1.5 GiB of 4.0 GiB" {
		t.Errorf("Progress = %q", got)
	}
	if got := Progress(&api.JobInfo{TasksDone: 1, TasksTotal: 2}); got != "1/2 tasks done, 0 failed" {
		t.Errorf("Progress without bytes = %q", got)
	}
}
