package config

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestGCHeapFloorKey starts the real FS master with and without
// process.gc-heap-floor and reads the collector's setting from its
// /metrics: the floor raises GOGC above Go's default of 100, and 0 leaves
// the default (a small worker need not pay the floor's memory).
func TestGCHeapFloorKey(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set in the environment: it turns the floor off, whatever the key says")
	}
	c := testutil.NewCluster(t, testutil.ClusterOptions{})
	http := fmt.Sprintf("127.0.0.1:%d", c.PortBase+1)
	for _, tc := range []struct {
		env  []string
		want func(float64) bool
		say  string
	}{
		{nil, func(p float64) bool { return p > 100 }, "above 100 (the default floor)"},
		{[]string{"ALLUVIUM_PROCESS_GC_HEAP_FLOOR=0"}, func(p float64) bool { return p == 100 }, "100 (Go's default)"},
	} {
		p := c.StartFSMaster(tc.env...)
		if got := testutil.Metric(t, http, "go_gc_gogc_percent"); !tc.want(got) {
			t.Errorf("FS master with %v: go_gc_gogc_percent = %v, want %s", tc.env, got, tc.say)
		}
		if err := p.Stop(30 * time.Second); err != nil {
			t.Fatalf("stop FS master: %v", err)
		}
	}
}
