// Package spec holds what is known of each built-in plan's job config
// without the cluster: the config types of load, persist, replicate, move
// and copy, their defaults (one shared Batching), strict decoding and the
// checks that need no server, and the typed Limits the job master's
// scheduler enforces. It is a leaf: the plans (which add the checks that
// read the cluster), the job master, the SDK (which re-exports the types),
// the CLI, the proxy and the FS master's persister all use it, so a config
// is described once and nobody else decodes one.
package spec
