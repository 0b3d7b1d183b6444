package spec

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// Defaults and bounds shared by the plans.
const (
	DefaultBatchFiles = 64       // small files (or blocks) per task
	DefaultBatchBytes = 64 << 20 // bytes a task fills up to
	DefaultPageSize   = 1000     // entries per listing page
	MaxPageSize       = 100000
	MaxReplication    = 64
	MaxPersistFiles   = 100000 // files one persist job may name
)

// Batching tunes how a plan groups small files into tasks and how it lists;
// the defaults are good. Its fields sit at the top level of a config's JSON.
type Batching struct {
	BatchFiles int   `json:"batchFiles,omitempty"` // most small files (blocks) per task (default 64)
	BatchBytes int64 `json:"batchBytes,omitempty"` // a task fills up to this many bytes (default 64 MiB)
	PageSize   int   `json:"pageSize,omitempty"`   // listing page size (default 1000)
}

// normalize fills the defaults and checks the bounds; what names the job in
// the error ("load /data", "copy").
func (b *Batching) normalize(what string) error {
	if b.BatchFiles == 0 {
		b.BatchFiles = DefaultBatchFiles
	}
	if b.BatchBytes == 0 {
		b.BatchBytes = DefaultBatchBytes
	}
	if b.PageSize == 0 {
		b.PageSize = DefaultPageSize
	}
	if b.BatchFiles < 1 || b.BatchBytes < 1 || b.PageSize < 1 || b.PageSize > MaxPageSize {
		return Invalidf("%s: batchFiles, batchBytes and pageSize must be positive (pageSize <= %d)", what, MaxPageSize)
	}
	return nil
}

// Limits are what the job master's scheduler enforces on a job, typed, so
// that it never reads a plan's config: validation sets them and they
// travel with the job (api.JobLimits in its submit command).
type Limits struct {
	// Bandwidth is the whole job's rate in bytes per second (0: none),
	// split over the job workers that hold its tasks now and enforced on
	// the bytes inside the block workers they drive.
	Bandwidth int64
	// Replication is how many cached copies of each block the job makes
	// (0: it does not cache).
	Replication int
	// Workers, when set, are the only block workers the job may use;
	// ExcludeWorkers are never used. Each names a worker by id, host or
	// host:port (api.JobLimits.AllowsWorker is the rule).
	Workers, ExcludeWorkers []string
	// DryRun: the job plans and counts what it would do (files, bytes,
	// deletes) and does nothing; the scheduler never keeps or runs a task
	// of it.
	DryRun bool
	// EndsWithTasks: the plan's Done has nothing to do for this job (it
	// answers true, no error, whatever the job did), so the job ends in
	// the raft entry that ends its last task instead of one of its own.
	// Set only where the plan's Done says so (plans/*.go Done).
	EndsWithTasks bool
}

// checkBandwidth refuses a negative bandwidth of a job (what names it).
func checkBandwidth(what string, bw int64) error {
	if bw < 0 {
		return Invalidf("%s: --bandwidth %d: want >= 0 bytes/s", what, bw)
	}
	return nil
}

// Proto is l as the job master stores it.
func (l Limits) Proto() *api.JobLimits {
	if l.Bandwidth == 0 && l.Replication == 0 && len(l.Workers) == 0 && len(l.ExcludeWorkers) == 0 && !l.DryRun && !l.EndsWithTasks {
		return nil
	}
	return &api.JobLimits{
		BandwidthBytesPerSec: l.Bandwidth, Replication: int32(l.Replication),
		Workers: l.Workers, ExcludeWorkers: l.ExcludeWorkers, DryRun: l.DryRun, EndsWithTasks: l.EndsWithTasks,
	}
}

// LimitsOf reads the limits the job master stored (nil: none).
func LimitsOf(p *api.JobLimits) Limits {
	return Limits{
		Bandwidth: p.GetBandwidthBytesPerSec(), Replication: int(p.GetReplication()),
		Workers: p.GetWorkers(), ExcludeWorkers: p.GetExcludeWorkers(), DryRun: p.GetDryRun(),
		EndsWithTasks: p.GetEndsWithTasks(),
	}
}

// Config is a built-in plan's config.
type Config interface {
	// Limits are what the scheduler enforces on the config's job.
	Limits() Limits
}

// Valid is a config a plan accepted: its normalized JSON (what planners
// and tasks read back) and its limits.
type Valid struct {
	Config []byte
	Limits Limits
}

// Accept returns c as a Valid config.
func Accept(c Config) (Valid, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return Valid{}, fmt.Errorf("encode config: %w", err)
	}
	return Valid{Config: b, Limits: c.Limits()}, nil
}

// Known reports whether plan is a built-in plan whose config Decode reads.
func Known(plan string) bool {
	switch plan {
	case "load", "persist", "replicate", "move", "copy", "exec", "noop":
		return true
	}
	return false
}

// Decode parses plan's config strictly, fills its defaults and checks what
// needs no cluster. A plan this package does not know is an
// InvalidArgument error.
func Decode(plan string, b []byte) (Config, error) {
	switch plan {
	case "load":
		return DecodeLoad(b)
	case "persist":
		return DecodePersist(b)
	case "replicate":
		return DecodeReplicate(b)
	case "move":
		return DecodeMove(b)
	case "copy":
		return DecodeCopy(b)
	case "exec":
		return DecodeExec(b)
	case "sync":
		return DecodeSync(b)
	case "noop":
		return DecodeNoop(b)
	}
	return nil, Invalidf("unknown plan %q", plan)
}

// What is a job's subject in a few words, for listings: its path, or
// "SRC -> DST"; "" when the config names neither (another plan's).
func What(config []byte) string {
	var c struct{ Path, Src, Dst string }
	if json.Unmarshal(config, &c) != nil {
		return ""
	}
	switch {
	case c.Path != "":
		return c.Path
	case c.Src != "":
		return c.Src + " -> " + c.Dst
	}
	return ""
}

// SyntaxError returns nil when b is one valid JSON value, else an error
// saying where it is not.
func SyntaxError(b []byte) error {
	if json.Valid(b) {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return fmt.Errorf("not one JSON value")
}

// Invalidf is an InvalidArgument status error.
func Invalidf(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// decodeStrict decodes one JSON object into v: unknown fields and trailing
// data are errors.
func decodeStrict(plan string, b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Invalidf("%s: config: %v", plan, err)
	}
	if dec.More() {
		return Invalidf("%s: config: trailing data after the JSON object", plan)
	}
	return nil
}

// cleanPath validates a config path field.
func cleanPath(plan, field, p string) (string, error) {
	if p == "" {
		return "", Invalidf("%s: config: %s is required", plan, field)
	}
	c, err := paths.Clean(p)
	if err != nil {
		return "", Invalidf("%s: %s: %v", plan, field, err)
	}
	return c, nil
}
