package sdk

// WithBlockSize sets the default block size of files this client creates
// (0: the master's fsmaster.user.block-size).
func WithBlockSize(n int64) Option { return func(o *options) { o.blockSize = n } }
