package spec

import "fmt"

// PersistConfig is the persist plan's job config: write the cached-only
// files under Path (or the Files named) to their UFS.
type PersistConfig struct {
	Path   string        `json:"path,omitempty"`
	Files  []PersistFile `json:"files,omitempty"`
	DryRun bool          `json:"dryRun,omitempty"`
	// Bandwidth is the whole job's rate in bytes/s (0: unlimited).
	Bandwidth int64 `json:"bandwidth,omitempty"`
	Filter
	Batching
}

// PersistFile names one file by path and inode id.
type PersistFile struct {
	Path string `json:"path"`
	ID   int64  `json:"id"`
}

// Limits implements Config.
func (c PersistConfig) Limits() Limits {
	return Limits{Bandwidth: c.Bandwidth, DryRun: c.DryRun, EndsWithTasks: true}
}

// DecodePersist parses a persist config strictly and fills defaults.
func DecodePersist(b []byte) (PersistConfig, error) {
	var c PersistConfig
	if err := decodeStrict("persist", b, &c); err != nil {
		return c, err
	}
	switch {
	case c.Path == "" && len(c.Files) == 0:
		return c, Invalidf("persist: config: path is required")
	case c.Path != "" && len(c.Files) > 0:
		return c, Invalidf("persist: config: give path or files, not both")
	case len(c.Files) > MaxPersistFiles:
		return c, Invalidf("persist: config: %d files, at most %d per job", len(c.Files), MaxPersistFiles)
	}
	if c.Path != "" {
		p, err := cleanPath("persist", "path", c.Path)
		if err != nil {
			return c, err
		}
		c.Path = p
	}
	for i := range c.Files {
		p, err := cleanPath("persist", fmt.Sprintf("files[%d].path", i), c.Files[i].Path)
		if err != nil {
			return c, err
		}
		if c.Files[i].ID <= 0 {
			return c, Invalidf("persist: config: files[%d].id %d: want the file's inode id", i, c.Files[i].ID)
		}
		c.Files[i].Path = p
	}
	if err := checkBandwidth("persist "+c.Path, c.Bandwidth); err != nil {
		return c, err
	}
	if err := c.Filter.normalize("persist " + c.Path); err != nil {
		return c, err
	}
	if err := c.Batching.normalize("persist"); err != nil {
		return c, err
	}
	return c, nil
}
