package sdk

// WithBlockSize sets the default block size of files this client creates
// (0: the master's fsmaster.user.block-size).
func WithBlockSize(n int64) Option { return func(o *options) { o.blockSize = n } }

// WithDomainSocket lets the client reach block workers on this host through
// their unix socket instead of loopback TCP (default on).
func WithDomainSocket(on bool) Option { return func(o *options) { o.noDomainSock = !on } }
