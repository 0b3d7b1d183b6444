package spec

// MoveConfig is the move plan's job config: move Src (a file or a tree) to
// Dst, across mounts too. Into an existing Dst a file whose copy there has
// its size and modification time is not moved again: the source is
// removed; one that differs replaces it. Overwrite replaces every file,
// IgnoreExisting none (the source stays).
type MoveConfig struct {
	Src            string `json:"src"`
	Dst            string `json:"dst"`
	Overwrite      bool   `json:"overwrite,omitempty"`
	IgnoreExisting bool   `json:"ignoreExisting,omitempty"`
	NoSync         bool   `json:"noSync,omitempty"` // as CopyConfig.NoSync
	DryRun         bool   `json:"dryRun,omitempty"`
	// Bandwidth is the whole job's rate in bytes/s (0: unlimited).
	Bandwidth int64 `json:"bandwidth,omitempty"`
	Filter
	PageSize int `json:"pageSize,omitempty"`
	// Whole is set at submit: one rename moves everything (same mount, DST
	// absent, or a file replacing a file).
	Whole bool `json:"whole,omitempty"`
	// DstExisted is set at submit.
	DstExisted bool `json:"dstExisted,omitempty"`
}

// Limits implements Config.
func (c MoveConfig) Limits() Limits { return Limits{Bandwidth: c.Bandwidth, DryRun: c.DryRun} }

// DecodeMove parses a move config strictly and fills defaults.
func DecodeMove(b []byte) (MoveConfig, error) {
	var c MoveConfig
	if err := decodeStrict("move", b, &c); err != nil {
		return c, err
	}
	var err error
	if c.Src, err = cleanPath("move", "src", c.Src); err != nil {
		return c, err
	}
	if c.Dst, err = cleanPath("move", "dst", c.Dst); err != nil {
		return c, err
	}
	if c.Src == c.Dst {
		return c, Invalidf("move %s: the destination is the source itself", c.Src)
	}
	if c.Overwrite && c.IgnoreExisting {
		return c, Invalidf("move %s: --overwrite and --ignore-existing contradict each other", c.Src)
	}
	if err := checkBandwidth("move "+c.Src, c.Bandwidth); err != nil {
		return c, err
	}
	if err := c.Filter.normalize("move " + c.Src); err != nil {
		return c, err
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.PageSize < 1 || c.PageSize > MaxPageSize {
		return c, Invalidf("move: pageSize must be 1..%d", MaxPageSize)
	}
	return c, nil
}
