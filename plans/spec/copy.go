package spec

// CopyConfig is the copy plan's job config: copy Src (a file or a tree) to
// Dst, across mounts and UFSes too.
type CopyConfig struct {
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	Overwrite bool   `json:"overwrite,omitempty"`
	Checksum  bool   `json:"checksum,omitempty"`
	Batching
	// DstExisted is set at submit: whether DST existed then (files of a
	// new DST need no existence check of their own).
	DstExisted bool `json:"dstExisted,omitempty"`
}

// Limits implements Config.
func (c CopyConfig) Limits() Limits { return Limits{} }

// DecodeCopy parses a copy config strictly and fills defaults.
func DecodeCopy(b []byte) (CopyConfig, error) {
	var c CopyConfig
	if err := decodeStrict("copy", b, &c); err != nil {
		return c, err
	}
	var err error
	if c.Src, err = cleanPath("copy", "src", c.Src); err != nil {
		return c, err
	}
	if c.Dst, err = cleanPath("copy", "dst", c.Dst); err != nil {
		return c, err
	}
	if c.Src == c.Dst {
		return c, Invalidf("copy %s: the destination is the source itself", c.Src)
	}
	if err := c.Batching.normalize("copy"); err != nil {
		return c, err
	}
	return c, nil
}
