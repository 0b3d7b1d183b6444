package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/sdk"
)

// The submit subcommands of persist, replicate, move, copy and sync, and their
// Alluxio-style aliases under `fs` (persist, setReplication, distributedMv,
// distributedCp), which wait by default.

// planCmd describes one plan's submit command.
type planCmd struct {
	plan    string
	use     string
	short   string
	long    string
	example string
	args    []string // positional argument names
	more    bool     // the last one may repeat
	flags   func(c *cobra.Command)
	// bandwidth: the plan moves data and takes --bandwidth.
	bandwidth bool
	// config builds the plan's config from the positional arguments and
	// --bandwidth (bytes/s, 0: unlimited, or not taken).
	config func(args []string, bandwidth int64) (any, error)
}

// submitCmd builds `job submit PLAN ARGS` (or, as an alias, its fs name:
// waiting by default, --async to return at once).
func (p planCmd) submitCmd(g *globals, alias string) *cobra.Command {
	var sf submitFlags
	var configJSON, bandwidth string
	var async bool
	use := p.use
	if alias != "" {
		use = alias + use[len(p.plan):]
	}
	c := &cobra.Command{
		Use:     use,
		Short:   p.short,
		Long:    p.long,
		Example: p.example,
		Args: func(cmd *cobra.Command, args []string) error {
			if configJSON != "" {
				return nil
			}
			if p.more {
				return minArgs(len(p.args), p.args...)(cmd, args)
			}
			return exactArgs(len(p.args), p.args...)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if async {
				sf.wait = false
			}
			if configJSON != "" {
				if len(args) > 0 {
					return usagef("%s: give %v or --config, not both", cmd.CommandPath(), p.args)
				}
				if err := checkConfigJSON(configJSON); err != nil {
					return err
				}
				return submit(cmd, g, p.plan, json.RawMessage(configJSON), sf)
			}
			bw, err := parseBandwidth(bandwidth)
			if err != nil {
				return err
			}
			cfg, err := p.config(args, bw)
			if err != nil {
				return err
			}
			return submit(cmd, g, p.plan, cfg, sf)
		},
	}
	if p.flags != nil {
		p.flags(c)
	}
	if p.bandwidth {
		c.Flags().StringVar(&bandwidth, "bandwidth", "", bandwidthHelp)
	}
	sf.add(c.Flags(), alias != "")
	if alias != "" {
		c.Long = fmt.Sprintf("Alluxio's familiar name for 'alluvium job submit %s ... --wait'.\n\n%s", p.plan, p.long)
		c.Flags().BoolVar(&async, "async", false, "do not wait for the job")
	} else {
		c.Flags().StringVar(&configJSON, "config", "", fmt.Sprintf("the whole %s config as JSON instead of arguments and flags", p.plan))
	}
	return c
}

func persistPlanCmd() planCmd {
	var ff filterFlags
	return planCmd{
		bandwidth: true,
		plan:      "persist", use: "persist PATH",
		short: "Write files that are only cached under PATH to their UFS, and mark them PERSISTED",
		long: `Persist every file under PATH (recursively) that is not yet PERSISTED: its
bytes go from the block worker holding most of its blocks straight into the
UFS under a temporary name, renamed into place by the FS master, which then
marks the file PERSISTED. Files already persisted are counted as skipped. A
file deleted, renamed or re-created meanwhile is left alone and listed as
failed. Files written with ASYNC_THROUGH are persisted like this
automatically (fsmaster.persist.delay after they close).

` + filterHelp,
		example: `  alluvium job submit persist /scratch/results --wait
  alluvium job submit persist /scratch --include '*.parquet' --max-age 1d
  alluvium fs persist /scratch/results`,
		args:  []string{"PATH"},
		flags: func(c *cobra.Command) { ff.add(c.Flags()) },
		config: func(args []string, bw int64) (any, error) {
			f, err := ff.filter()
			return sdk.PersistConfig{Path: args[0], Filter: f, Bandwidth: bw}, err
		},
	}
}

func replicatePlanCmd() planCmd {
	var n int
	return planCmd{
		bandwidth: true,
		plan:      "replicate", use: "replicate PATH",
		short: "Bring every block under PATH to exactly --replication cached copies",
		long: `Make every block of every file under PATH cached on exactly --replication
block workers: blocks short of copies are copied from a worker that has one
(from the UFS only when none has), blocks with more lose the extra copies.
Pinned files keep their copies. More copies than live block workers, or
fewer than 1, is refused.`,
		example: `  alluvium job submit replicate /hot --replication 3 --wait
  alluvium fs setReplication /hot --replication 1`,
		args: []string{"PATH"},
		flags: func(c *cobra.Command) {
			c.Flags().IntVar(&n, "replication", 0, "copies of every block (required, 1 or more)")
		},
		config: func(args []string, bw int64) (any, error) {
			if n < 1 {
				return nil, usagef("--replication %d: want 1 or more copies", n)
			}
			return sdk.ReplicateConfig{Path: args[0], Replication: n, Bandwidth: bw}, nil
		},
	}
}

// copyFlags are how copy, move and sync treat a file DST already has.
type copyFlags struct {
	overwrite, ignoreExisting, checksum, sync bool
	filter                                    filterFlags
}

func (f *copyFlags) add(c *cobra.Command, checksum bool) {
	c.Flags().BoolVar(&f.overwrite, "overwrite", false, "copy every file again, even one DST already has the same")
	c.Flags().BoolVar(&f.ignoreExisting, "ignore-existing", false, "never replace a file DST has, even one that differs")
	if checksum {
		c.Flags().BoolVar(&f.checksum, "checksum", false, "compare contents (SHA-256), not modification times, to find what changed; check every copy against its source")
	}
	c.Flags().BoolVar(&f.sync, "sync", true, "sync each directory of SRC and DST with its UFS as it is listed (--sync=false trusts what Alluvium knows)")
	f.filter.add(c.Flags())
}

func (f *copyFlags) config(args []string) (sdk.CopyConfig, error) {
	if f.overwrite && f.ignoreExisting {
		return sdk.CopyConfig{}, usagef("--overwrite and --ignore-existing contradict each other: give one")
	}
	flt, err := f.filter.filter()
	return sdk.CopyConfig{Src: args[0], Dst: args[1], Overwrite: f.overwrite, IgnoreExisting: f.ignoreExisting,
		Checksum: f.checksum, NoSync: !f.sync, Filter: flt}, err
}

// incrementalHelp is how copy, move and sync treat an existing DST.
const incrementalHelp = `Into an existing DST only what differs is done: a file whose copy at DST has
the same size and modification time (with --checksum: the same size and
SHA-256) is skipped and counted as skipped, so running the job again does
nothing and a nightly job does only what changed. A file that differs is
replaced in one step (written aside, then swapped in: a reader sees the old
file or the new one). --overwrite replaces every file; --ignore-existing
never replaces one. Copies keep their source's modification time.
`

func movePlanCmd() planCmd {
	var cf copyFlags
	return planCmd{
		bandwidth: true,
		plan:      "move", use: "move SRC DST",
		short: "Move a file or tree to DST, across mounts too, keeping the cache",
		long: `Move SRC to DST. Within one mount onto a DST that does not exist it is one
rename (in the UFS too) and every cached block stays; otherwise file by file:
within a mount a rename, across mounts a copy verified by checksum, then the
source deleted, its cached blocks copied beside the old ones. Moving a
directory into itself is refused.

` + incrementalHelp + `A source file whose copy DST already has is just
removed; with --ignore-existing it stays where it is.

` + filterHelp,
		example: `  alluvium job submit move /staging/day1 /archive/day1 --wait
  alluvium job submit move /staging /archive --include '*.parquet' --min-age 1d
  alluvium fs distributedMv /local/data /s3/data`,
		args:  []string{"SRC", "DST"},
		flags: func(c *cobra.Command) { cf.add(c, false) },
		config: func(args []string, bw int64) (any, error) {
			c, err := cf.config(args)
			return sdk.MoveConfig{Src: c.Src, Dst: c.Dst, Overwrite: c.Overwrite, IgnoreExisting: c.IgnoreExisting, NoSync: c.NoSync, Filter: c.Filter, Bandwidth: bw}, err
		},
	}
}

func copyPlanCmd() planCmd {
	var cf copyFlags
	return planCmd{
		bandwidth: true,
		plan:      "copy", use: "copy SRC DST",
		short: "Copy a file or tree to DST, across mounts and UFS kinds (local, S3), only what changed",
		long: `Copy SRC to DST (DST names the copy: SRC's files land at the same relative
paths under it). Each file is written straight from the cache or the source
UFS into the destination UFS under a temporary name, then renamed; large
files are split by blocks fetched in parallel by several workers.

` + incrementalHelp + `
` + filterHelp + `
'job stat' shows the files copied and skipped (filesTotal, filesSkipped,
bytesSkipped in --output json). To also delete what SRC no longer has, use
'alluvium job submit sync'.`,
		example: `  alluvium job submit copy /data /s3/backup/data --wait
  alluvium job submit copy /data /s3/backup/data --dry-run
  alluvium job submit copy /lake /s3/lake --include '**.parquet' --max-age 7d
  alluvium job submit copy /a/f /b/f --overwrite --checksum
  alluvium job submit copy /data /s3/backup --bandwidth 50MiB
  alluvium fs distributedCp /s3/in /scratch/in`,
		args:  []string{"SRC", "DST"},
		flags: func(c *cobra.Command) { cf.add(c, true) },
		config: func(args []string, bw int64) (any, error) {
			c, err := cf.config(args)
			c.Bandwidth = bw
			return c, err
		},
	}
}

func execPlanCmd() planCmd {
	var input string
	var perBatch bool
	var maxOutput int
	return planCmd{
		plan: "exec", use: "exec PATH -- COMMAND [ARGS...]",
		short: "Run an allowed command on every file under PATH, beside the data",
		long: `Run COMMAND once per file under PATH (or, with --per-batch, once per task
with all its files), on the job worker beside the block worker that caches
the file. The file is given as a local path — the cached block file itself
when the file is one block cached there, else a copy — appended to the
arguments or in place of an argument {}; with --input stdin its bytes come
on standard input instead. Only commands an administrator listed in
jobworker.exec.allow run (COMMAND must be written exactly as listed); your
read permission on every file is checked first. The command runs without the
worker's environment, in a scratch directory of its own; treat the path it
gets as read-only. 'job stat ID -v' shows each file's exit code and the tail
of its output; a non-zero exit fails the file (the task is retried as any
other).`,
		example: `  alluvium job submit exec /data -- sha256sum --wait
  alluvium job submit exec /logs --input stdin -- wc -l
  alluvium job submit exec /images --per-batch -- /opt/bin/index {}`,
		args: []string{"PATH", "COMMAND"},
		more: true,
		flags: func(c *cobra.Command) {
			c.Flags().StringVar(&input, "input", "path", "how the command gets the file: path or stdin")
			c.Flags().BoolVar(&perBatch, "per-batch", false, "one run per task with all its files (input path)")
			c.Flags().IntVar(&maxOutput, "max-output", 0, "bytes of each run's output kept for job stat -v (default 4096)")
		},
		config: func(args []string, _ int64) (any, error) {
			return sdk.ExecConfig{Path: args[0], Command: args[1:], Input: input, PerBatch: perBatch, MaxOutput: maxOutput}, nil
		},
	}
}

func noopPlanCmd() planCmd {
	return planCmd{
		plan: "noop", use: "noop PATH",
		short: "Plan and run tasks over every file under PATH that touch no data (a check of the job service)",
		long: `Plan every file under PATH as the per-file plans do — listed page by page,
batched (batchFiles, default 64) per block worker caching most of each file,
each task run by the job worker beside it — with tasks that only count their
files: no byte is read, cached or written. It checks the job service end to
end (listing, placement, dispatch, raft commits, the workers' reports) and
measures its own cost; 'job stat ID -v' shows each task's file count. It is
the built-in twin of the plugin sdk/examples/noop-plan in the benchmark of
plan plugins' overhead (docs/BENCHMARKS.md).`,
		example: `  alluvium job submit noop /data --wait
  alluvium job submit noop --config '{"path":"/data","batchFiles":256}' --wait`,
		args: []string{"PATH"},
		config: func(args []string, _ int64) (any, error) {
			return sdk.NoopConfig{Path: args[0]}, nil
		},
	}
}

func syncPlanCmd() planCmd {
	var cf copyFlags
	var maxDelete int64
	return planCmd{
		bandwidth: true,
		plan:      "sync", use: "sync SRC DST",
		short: "Make DST mirror SRC: copy what is new or changed, delete what SRC no longer has",
		long: `Make the directory DST a mirror of SRC, across mounts and UFS kinds (as
rclone sync): first every file that is new or changed is copied, as
'job submit copy' does; then, only if every copy succeeded, each file DST
has and SRC lacks is deleted (a directory SRC lacks goes whole). Nothing is
ever deleted outside DST, nor when SRC cannot be listed (the job fails
first), nor a file the filters leave out. --max-delete N fails the job
before deleting anything when there is more to delete than N.
Try it first with --dry-run: it reports the files it would copy, skip and
delete, and changes nothing.

` + incrementalHelp + `
` + filterHelp,
		example: `  alluvium job submit sync /data /s3/mirror --dry-run
  alluvium job submit sync /data /s3/mirror --max-delete 100 --wait
  alluvium job submit sync /lake /backup/lake --exclude 'tmp/' --exclude '*.inprogress'
  alluvium job submit sync /data /s3/mirror --bandwidth 50MiB
  alluvium policy add mirror --cron "0 2 * * *" sync /data /s3/mirror --max-delete 1000`,
		args: []string{"SRC", "DST"},
		flags: func(c *cobra.Command) {
			cf.add(c, true)
			c.Flags().Int64Var(&maxDelete, "max-delete", -1, "fail the job, deleting nothing, if it would delete more than this many files (-1: no limit)")
		},
		config: func(args []string, bw int64) (any, error) {
			c, err := cf.config(args)
			c.Bandwidth = bw
			sc := sdk.SyncConfig{CopyConfig: c}
			if maxDelete < -1 {
				return nil, usagef("--max-delete %d: want 0 or more (-1: no limit)", maxDelete)
			}
			if maxDelete >= 0 {
				sc.MaxDelete = &maxDelete
			}
			return sc, err
		},
	}
}

// jobPlanSubmitCmds are `job submit persist|replicate|move|copy|sync|exec|noop`.
func jobPlanSubmitCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{
		persistPlanCmd().submitCmd(g, ""), replicatePlanCmd().submitCmd(g, ""),
		movePlanCmd().submitCmd(g, ""), copyPlanCmd().submitCmd(g, ""), syncPlanCmd().submitCmd(g, ""),
		execPlanCmd().submitCmd(g, ""), noopPlanCmd().submitCmd(g, ""),
	}
}

// jobPlanFSAliases are `fs persist|setReplication|distributedMv|distributedCp`.
func jobPlanFSAliases(g *globals) []*cobra.Command {
	return []*cobra.Command{
		persistPlanCmd().submitCmd(g, "persist"), replicatePlanCmd().submitCmd(g, "setReplication"),
		movePlanCmd().submitCmd(g, "distributedMv"), copyPlanCmd().submitCmd(g, "distributedCp"),
	}
}
