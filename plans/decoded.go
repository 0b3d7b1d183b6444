package plans

import (
	"bytes"
	"context"
	"sync"
)

// A submit validates a job's config and then, in the same call, may plan
// the job at once (the job master's planInline): without a hand-over the
// config is decoded strictly twice, once from the caller's bytes and once
// from the canonical bytes Validate returned (each ~1.5% of the job
// master's CPU at thousands of tiny jobs a second). A plan's Validate
// leaves what it decoded under the canonical bytes in the context
// (keepDecoded); its NewPlanner, given those bytes, takes it from there
// (decodedAs) instead of decoding them again.

type decodedKey struct{}

// decodedConfig is the one config a submit decoded, with the canonical
// bytes it stands for.
type decodedConfig struct {
	mu  sync.Mutex
	raw []byte
	cfg any
}

// WithDecodedConfigs returns a context in which a plan's Validate hands
// the config it decoded to the planner made with the same context, for the
// config bytes Validate returned.
func WithDecodedConfigs(ctx context.Context) context.Context {
	return context.WithValue(ctx, decodedKey{}, &decodedConfig{})
}

// keepDecoded records that raw decodes to cfg, if ctx has room for it.
// cfg must not be changed afterwards: whoever takes it only reads it.
func keepDecoded(ctx context.Context, raw []byte, cfg any) {
	if d, _ := ctx.Value(decodedKey{}).(*decodedConfig); d != nil {
		d.mu.Lock()
		d.raw, d.cfg = raw, cfg
		d.mu.Unlock()
	}
}

// decodedAs returns the config kept for exactly raw, if ctx has one of
// type T.
func decodedAs[T any](ctx context.Context, raw []byte) (T, bool) {
	var zero T
	d, _ := ctx.Value(decodedKey{}).(*decodedConfig)
	if d == nil {
		return zero, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg == nil || !bytes.Equal(d.raw, raw) {
		return zero, false
	}
	c, ok := d.cfg.(T)
	return c, ok
}
