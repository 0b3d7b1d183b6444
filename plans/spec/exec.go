package spec

import (
	"strings"
)

// Bounds of the exec plan.
const (
	DefaultExecOutput = 4 << 10  // bytes of a command's output kept per file
	MaxExecOutput     = 64 << 10 // most a config may ask to keep
	MaxExecArgs       = 64       // arguments of the command
)

// Exec input modes: how a command gets a file.
const (
	ExecInputPath  = "path"  // a local path (the cached block file when short-circuit is possible)
	ExecInputStdin = "stdin" // the file's bytes on standard input
)

// ExecConfig is the exec plan's job config: run Command on every file
// under Path, on the job worker beside the block worker caching it.
type ExecConfig struct {
	Path string `json:"path"`
	// Command is the argv run per file (no shell). Command[0] must be
	// listed in jobworker.exec.allow. An argument "{}" is replaced by the
	// file's local path (all the paths with PerBatch); without one the
	// path is appended. With Input stdin no path is given.
	Command []string `json:"command"`
	Input   string   `json:"input,omitempty"` // path (default) or stdin
	// PerBatch runs the command once per task with every file of the task
	// (up to batchFiles) instead of once per file; Input must be path.
	PerBatch bool `json:"perBatch,omitempty"`
	// MaxOutput is how many bytes of each run's output (stdout and stderr,
	// the last ones) job stat -v shows; default 4 KiB.
	MaxOutput int  `json:"maxOutput,omitempty"`
	DryRun    bool `json:"dryRun,omitempty"` // count the files it would run on
	Batching
}

// Limits implements Config.
func (c ExecConfig) Limits() Limits { return Limits{DryRun: c.DryRun, EndsWithTasks: true} }

// DecodeExec parses an exec config strictly and fills its defaults. The
// allow list is the job master's to check (it is configuration, not
// part of the job).
func DecodeExec(b []byte) (ExecConfig, error) {
	var c ExecConfig
	if err := decodeStrict("exec", b, &c); err != nil {
		return c, err
	}
	p, err := cleanPath("exec", "path", c.Path)
	if err != nil {
		return c, err
	}
	c.Path = p
	what := "exec " + c.Path
	if len(c.Command) == 0 || strings.TrimSpace(c.Command[0]) == "" {
		return c, Invalidf("%s: config: command is required (the program and its arguments)", what)
	}
	if len(c.Command) > MaxExecArgs {
		return c, Invalidf("%s: command has %d arguments (at most %d)", what, len(c.Command), MaxExecArgs)
	}
	for i, a := range c.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return c, Invalidf("%s: command argument %d holds a NUL byte", what, i)
		}
	}
	switch c.Input {
	case "":
		c.Input = ExecInputPath
	case ExecInputPath, ExecInputStdin:
	default:
		return c, Invalidf("%s: input %q: want %s or %s", what, c.Input, ExecInputPath, ExecInputStdin)
	}
	if c.PerBatch && c.Input != ExecInputPath {
		return c, Invalidf("%s: perBatch needs input %s (one standard input cannot carry many files)", what, ExecInputPath)
	}
	if c.MaxOutput == 0 {
		c.MaxOutput = DefaultExecOutput
	}
	if c.MaxOutput < 0 || c.MaxOutput > MaxExecOutput {
		return c, Invalidf("%s: maxOutput %d: want 1..%d bytes", what, c.MaxOutput, MaxExecOutput)
	}
	if err := c.Batching.normalize(what); err != nil {
		return c, err
	}
	return c, nil
}
