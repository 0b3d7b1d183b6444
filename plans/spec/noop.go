package spec

// NoopConfig is the noop plan's job config: plan tasks over every file
// under Path, as the per-file plans do, and run nothing.
type NoopConfig struct {
	Path   string `json:"path"`
	DryRun bool   `json:"dryRun,omitempty"`
	Batching
}

// Limits implements Config: Noop.Done has nothing to do (one round).
func (c NoopConfig) Limits() Limits { return Limits{DryRun: c.DryRun, EndsWithTasks: true} }

// DecodeNoop parses a noop config strictly and fills its defaults.
func DecodeNoop(b []byte) (NoopConfig, error) {
	var c NoopConfig
	if err := decodeStrict("noop", b, &c); err != nil {
		return c, err
	}
	p, err := cleanPath("noop", "path", c.Path)
	if err != nil {
		return c, err
	}
	c.Path = p
	if err := c.Batching.normalize("noop " + c.Path); err != nil {
		return c, err
	}
	return c, nil
}
