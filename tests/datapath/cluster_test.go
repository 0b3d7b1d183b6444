package datapath

import (
	"path/filepath"
	"testing"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

const blockSize = testutil.BlockSize // small blocks keep the suite fast

// cluster is an FS master and block workers (testutil.Cluster, no job
// master).
type cluster struct {
	*testutil.Cluster
}

// startCluster starts the FS master and o.Workers block workers with this
// suite's settings, ahead of o.Env: a worker is LOST 2s after its last
// heartbeat (the loss tests wait on it), CACHE_THROUGH is the default write
// type (puts without --write-type rely on it), leases last 30s, and the
// logs are at debug level for a failure's post-mortem.
func startCluster(t *testing.T, o testutil.ClusterOptions) *cluster {
	t.Helper()
	o.Env = append([]string{
		"ALLUVIUM_LOG_LEVEL=debug",
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_FSMASTER_USER_WRITE_TYPE=CACHE_THROUGH",
		"ALLUVIUM_WORKER_LEASE_TIMEOUT=30s",
	}, o.Env...)
	return &cluster{testutil.StartCluster(t, o)}
}

// writeLocal writes a local file for `fs put` and returns its path.
func writeLocal(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	return testutil.WriteFile(t, filepath.Join(dir, name), data)
}

// sizes are the round-trip sizes the issue names.
var sizes = []struct {
	name string
	n    int
}{
	{"0", 0}, {"1", 1}, {"block-1", blockSize - 1}, {"block", blockSize}, {"block+1", blockSize + 1}, {"3.5blocks", blockSize * 7 / 2},
}

var writeTypes = []api.WriteType{api.WriteType_MUST_CACHE, api.WriteType_CACHE_THROUGH, api.WriteType_THROUGH, api.WriteType_ASYNC_THROUGH}
