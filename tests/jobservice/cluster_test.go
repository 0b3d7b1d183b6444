// Package jobservice tests the job service end to end on real processes:
// an FS master, block+job workers and one or three job masters, each its
// own alluvium process on loopback with its own ports and directories
// (testutil.Cluster).
package jobservice

import (
	"context"
	"testing"

	"github.com/alluvium/alluvium/internal/testutil"
)

const blockSize = testutil.BlockSize // small blocks: many tasks from little data

// cluster adds this suite's checks to testutil.Cluster.
type cluster struct {
	*testutil.Cluster
	t *testing.T
}

func startCluster(t *testing.T, o testutil.ClusterOptions) *cluster {
	t.Helper()
	return &cluster{Cluster: testutil.StartCluster(t, o), t: t}
}

// cachedBlocks counts the blocks of files that have a cached copy, and all
// their blocks.
func (c *cluster) cachedBlocks(files map[string][]byte) (cached, total int) {
	c.t.Helper()
	for _, p := range testutil.SortedKeys(files) {
		fi, err := c.Client.Stat(context.Background(), p)
		if err != nil {
			c.t.Fatalf("stat %s: %v", p, err)
		}
		for _, b := range fi.GetFileBlockInfos() {
			total++
			if len(b.GetBlockInfo().GetLocations()) > 0 {
				cached++
			}
		}
	}
	return cached, total
}
