package spec

// CopyConfig is the copy plan's job config: copy Src (a file or a tree) to
// Dst, across mounts and UFSes too. Into an existing Dst only what differs
// is copied: a file whose copy has its size and modification time (with
// Checksum: its size and content) is skipped; Overwrite copies every file
// again, IgnoreExisting none that exists at Dst.
type CopyConfig struct {
	Src            string `json:"src"`
	Dst            string `json:"dst"`
	Overwrite      bool   `json:"overwrite,omitempty"`
	IgnoreExisting bool   `json:"ignoreExisting,omitempty"`
	// Checksum compares contents (SHA-256) instead of modification times
	// to find the files that differ, and checks every copy against its
	// source.
	Checksum bool `json:"checksum,omitempty"`
	// NoSync trusts the namespace as it is; by default each directory of
	// both trees is synced with its UFS as the job lists it.
	NoSync bool `json:"noSync,omitempty"`
	DryRun bool `json:"dryRun,omitempty"`
	// Bandwidth is the whole job's rate in bytes/s (0: unlimited).
	Bandwidth int64 `json:"bandwidth,omitempty"`
	Filter
	Batching
	// DstExisted is set at submit: whether DST existed then.
	DstExisted bool `json:"dstExisted,omitempty"`
}

// Limits implements Config.
func (c CopyConfig) Limits() Limits {
	return Limits{Bandwidth: c.Bandwidth, DryRun: c.DryRun, EndsWithTasks: true}
}

// DecodeCopy parses a copy config strictly and fills defaults.
func DecodeCopy(b []byte) (CopyConfig, error) {
	var c CopyConfig
	if err := decodeStrict("copy", b, &c); err != nil {
		return c, err
	}
	return c, c.normalize("copy")
}

// normalize checks a copy (or sync) config and fills its defaults.
func (c *CopyConfig) normalize(plan string) error {
	var err error
	if c.Src, err = cleanPath(plan, "src", c.Src); err != nil {
		return err
	}
	if c.Dst, err = cleanPath(plan, "dst", c.Dst); err != nil {
		return err
	}
	if c.Src == c.Dst {
		return Invalidf("%s %s: the destination is the source itself", plan, c.Src)
	}
	if c.Overwrite && c.IgnoreExisting {
		return Invalidf("%s %s: --overwrite and --ignore-existing contradict each other", plan, c.Src)
	}
	if err := checkBandwidth(plan+" "+c.Src, c.Bandwidth); err != nil {
		return err
	}
	if err := c.Filter.normalize(plan + " " + c.Src); err != nil {
		return err
	}
	return c.Batching.normalize(plan)
}
