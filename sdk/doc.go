// Package sdk is Alluvium's public Go client: file-system calls against the
// FS master and the block workers, job calls against the job master, and
// pipelines that chain jobs.
//
//	c, err := sdk.Dial(ctx, sdk.WithMaster("localhost:19998"))
//	if err != nil { ... }
//	defer c.Close()
//	info, err := c.Stat(ctx, "/data/file")
//	if errors.Is(err, sdk.ErrNotFound) { ... }
//
// The SDK talks to the servers only through the api package; it imports no
// server internals, so it can be vendored into any program.
package sdk
