package spec

// SyncConfig is the sync plan's job config: make Dst mirror Src — copy
// what is new or changed (as copy does) and delete from Dst what Src no
// longer has. MaxDelete, when set, fails the job before it deletes
// anything if it would delete more files than that.
type SyncConfig struct {
	CopyConfig
	MaxDelete *int64 `json:"maxDelete,omitempty"`
}

// Limits implements Config.
func (c SyncConfig) Limits() Limits {
	l := c.CopyConfig.Limits()
	l.EndsWithTasks = false // Sync.Done deletes what SRC lacks
	return l
}

// DecodeSync parses a sync config strictly and fills defaults.
func DecodeSync(b []byte) (SyncConfig, error) {
	var c SyncConfig
	if err := decodeStrict("sync", b, &c); err != nil {
		return c, err
	}
	if err := c.CopyConfig.normalize("sync"); err != nil {
		return c, err
	}
	if c.MaxDelete != nil && *c.MaxDelete < 0 {
		return c, Invalidf("sync %s: --max-delete %d: want >= 0 files", c.Src, *c.MaxDelete)
	}
	return c, nil
}
