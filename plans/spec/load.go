package spec

import (
	"strings"

	"github.com/alluvium/alluvium/internal/paths"
)

// LoadConfig is the load plan's job config: cache every block under Path.
type LoadConfig struct {
	Path        string `json:"path"`
	Replication int    `json:"replication,omitempty"` // copies wanted; default 1
	// Workers limits the block workers used (id, host or host:port);
	// ExcludeWorkers leaves some out.
	Workers        []string `json:"workers,omitempty"`
	ExcludeWorkers []string `json:"excludeWorkers,omitempty"`
	Verify         bool     `json:"verify,omitempty"`    // re-check when done, re-load what is missing
	Bandwidth      int64    `json:"bandwidth,omitempty"` // bytes/s for the whole job; 0: unlimited
	// NoSync trusts the namespace as it is; by default each directory is
	// synced with the UFS as the job lists it, so files that appeared,
	// changed or vanished there since the last listing are seen.
	NoSync bool `json:"noSync,omitempty"`
	DryRun bool `json:"dryRun,omitempty"`
	Filter
	Batching
}

// Limits implements Config.
func (c LoadConfig) Limits() Limits {
	return Limits{Bandwidth: c.Bandwidth, Replication: c.Replication, Workers: c.Workers, ExcludeWorkers: c.ExcludeWorkers, DryRun: c.DryRun,
		EndsWithTasks: !c.Verify || c.DryRun} // Load.Done: a verify round follows the first
}

// DecodeLoad parses a load config strictly (unknown fields are an error)
// and fills the defaults. It does not consult the cluster.
func DecodeLoad(b []byte) (LoadConfig, error) {
	var c LoadConfig
	if err := decodeStrict("load", b, &c); err != nil {
		return c, err
	}
	if c.Path == "" {
		return c, Invalidf("load: config: path is required")
	}
	p, err := paths.Clean(c.Path)
	if err != nil {
		return c, Invalidf("load: %v", err)
	}
	c.Path = p
	if c.Replication == 0 {
		c.Replication = 1
	}
	if c.Replication < 1 || c.Replication > MaxReplication {
		return c, Invalidf("load %s: --replication %d: want 1..%d", c.Path, c.Replication, MaxReplication)
	}
	if err := checkBandwidth("load "+c.Path, c.Bandwidth); err != nil {
		return c, err
	}
	if err := c.Filter.normalize("load " + c.Path); err != nil {
		return c, err
	}
	if err := c.Batching.normalize("load " + c.Path); err != nil {
		return c, err
	}
	for _, list := range [][]string{c.Workers, c.ExcludeWorkers} {
		for _, w := range list {
			if strings.TrimSpace(w) == "" {
				return c, Invalidf("load %s: --workers/--exclude-workers: empty worker name", c.Path)
			}
		}
	}
	return c, nil
}
