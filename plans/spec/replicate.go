package spec

// ReplicateConfig is the replicate plan's job config: bring every block
// under Path to exactly Replication cached copies.
type ReplicateConfig struct {
	Path        string `json:"path"`
	Replication int    `json:"replication"`
	PageSize    int    `json:"pageSize,omitempty"`
	DryRun      bool   `json:"dryRun,omitempty"`
	// Bandwidth is the whole job's rate in bytes/s (0: unlimited).
	Bandwidth int64 `json:"bandwidth,omitempty"`
}

// Limits implements Config.
func (c ReplicateConfig) Limits() Limits {
	return Limits{Replication: c.Replication, Bandwidth: c.Bandwidth, DryRun: c.DryRun, EndsWithTasks: true}
}

// DecodeReplicate parses a replicate config strictly.
func DecodeReplicate(b []byte) (ReplicateConfig, error) {
	var c ReplicateConfig
	if err := decodeStrict("replicate", b, &c); err != nil {
		return c, err
	}
	p, err := cleanPath("replicate", "path", c.Path)
	if err != nil {
		return c, err
	}
	c.Path = p
	if c.Replication < 1 || c.Replication > MaxReplication {
		return c, Invalidf("replicate %s: --replication %d: want 1..%d copies", c.Path, c.Replication, MaxReplication)
	}
	if err := checkBandwidth("replicate "+c.Path, c.Bandwidth); err != nil {
		return c, err
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.PageSize < 1 || c.PageSize > MaxPageSize {
		return c, Invalidf("replicate: pageSize must be 1..%d", MaxPageSize)
	}
	return c, nil
}
