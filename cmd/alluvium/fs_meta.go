package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/fileview"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/sdk"
)

// fsMetaCommands are the namespace commands: ls, stat, mkdir, rm, mv, mount,
// unmount, chmod, chown, pin, unpin, setTtl, unsetTtl.
func fsMetaCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newLsCmd(g), newStatCmd(g), newMkdirCmd(g), newRmCmd(g), newMvCmd(g),
		newMountCmd(g), newUnmountCmd(g), newChmodCmd(g), newChownCmd(g),
		newPinCmd(g, true), newPinCmd(g, false), newSetTTLCmd(g), newUnsetTTLCmd(g),
	}
}

// metaClient dials the FS master named by the flags, env and config.
func metaClient(cmd *cobra.Command, g *globals) (*sdk.Client, error) {
	cfg, err := g.load(cmd)
	if err != nil {
		return nil, err
	}
	return dialCluster(cmd.Context(), cfg)
}

// cliErr keeps a server error on one line without repeating "op path:"
// when the server's message already says it.
func cliErr(err error) error {
	var se *sdk.Error
	if errors.As(err, &se) && se.Path != "" && strings.Contains(se.Message, se.Path) {
		return errors.New(se.Message)
	}
	if errors.As(err, &se) && se.Code.String() == "Unavailable" && !strings.Contains(se.Message, "no quorum") {
		return fmt.Errorf("%w (is the FS master running? --master / ALLUVIUM_MASTER)", err)
	}
	return err
}

// modeString renders a mode as ls does: drwxr-xr-x.
func modeString(dir bool, mode uint32) string {
	var b [10]byte
	return string(appendMode(b[:0], dir, mode))
}

// appendMode appends modeString(dir, mode) to b.
func appendMode(b []byte, dir bool, mode uint32) []byte {
	if dir {
		b = append(b, 'd')
	} else {
		b = append(b, '-')
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if mode&(1<<uint(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	return b
}

func persistText(fi *api.FileInfo) string {
	switch fi.GetPersistenceState() {
	case api.PersistenceState_PERSISTED:
		return "PERSISTED"
	case api.PersistenceState_TO_BE_PERSISTED:
		return "TO_BE_PERSISTED"
	default:
		return "NOT_PERSISTED"
	}
}

// lsPrinter writes ls rows: mode owner group size persistence mtime cached
// path, aligned as text/tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) aligns
// them between two flushes, byte for byte, without its cost (it keeps and
// measures every cell as it goes: with fmt, most of what the CLI spent a
// file listing a tree, after decoding). A block holding a byte tabwriter
// treats apart (tab, newline, vertical tab, form feed, its escape 0xff) in
// an owner, group or path goes through a real tabwriter instead, so such
// names print as they always did. Rows of one listing mostly share their
// modification second, so the formatted time is kept between rows.
type lsPrinter struct {
	w       io.Writer
	lastSec int64
	lastFmt string
	rows    []lsRow // since the last flush
	special bool    // a row of rows needs the real tabwriter
	buf     []byte
}

// lsRow is one row waiting for its block's column widths.
type lsRow struct {
	fi    *api.FileInfo
	mtime string
}

func (p *lsPrinter) line(fi *api.FileInfo) {
	ms := fi.GetLastModificationTimeMs()
	if sec := ms / 1000; sec != p.lastSec || p.lastFmt == "" {
		p.lastSec, p.lastFmt = sec, time.UnixMilli(ms).Format("2006-01-02 15:04:05")
	}
	p.rows = append(p.rows, lsRow{fi: fi, mtime: p.lastFmt})
	p.special = p.special || tabSpecial(fi.GetOwner()) || tabSpecial(fi.GetGroup()) || tabSpecial(fi.GetPath())
}

// tabSpecial reports whether s holds a byte text/tabwriter does not copy
// as a cell's text.
func tabSpecial(s string) bool {
	return strings.ContainsAny(s, "\t\n\v\f") || strings.IndexByte(s, tabwriter.Escape) >= 0
}

// cached is the row's share cached cell.
func (r lsRow) cached(b []byte) []byte {
	if r.fi.GetFolder() {
		return append(b, '-')
	}
	b = strconv.AppendInt(b, int64(r.fi.GetCachedPercent()), 10)
	return append(b, '%')
}

// flush writes the rows so far, aligned among themselves.
func (p *lsPrinter) flush() error {
	rows := p.rows
	p.rows = p.rows[:0]
	if len(rows) == 0 {
		return nil
	}
	if p.special {
		p.special = false
		w := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
		for _, r := range rows {
			fi := r.fi
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", modeString(fi.GetFolder(), fi.GetMode()), fi.GetOwner(), fi.GetGroup(),
				fi.GetLength(), persistText(fi), r.mtime, r.cached(nil), fi.GetPath())
		}
		return w.Flush()
	}
	// Column widths as tabwriter measures them: runes, the widest cell
	// plus the padding (2).
	var wOwner, wGroup, wLen, wPersist, wTime, wCached int
	var num [24]byte
	for _, r := range rows {
		fi := r.fi
		wOwner = max(wOwner, utf8.RuneCountInString(fi.GetOwner()))
		wGroup = max(wGroup, utf8.RuneCountInString(fi.GetGroup()))
		wLen = max(wLen, len(strconv.AppendInt(num[:0], fi.GetLength(), 10)))
		wPersist = max(wPersist, len(persistText(fi)))
		wTime = max(wTime, utf8.RuneCountInString(r.mtime))
		wCached = max(wCached, len(r.cached(num[:0])))
	}
	const pad = 2
	b := p.buf[:0]
	cell := func(b []byte, from, width int) []byte {
		for n := width + pad - utf8.RuneCount(b[from:]); n > 0; n-- {
			b = append(b, ' ')
		}
		return b
	}
	for _, r := range rows {
		fi := r.fi
		b = appendMode(b, fi.GetFolder(), fi.GetMode())
		b = append(b, ' ', ' ') // the mode is always 10 wide
		from := len(b)
		b = cell(append(b, fi.GetOwner()...), from, wOwner)
		from = len(b)
		b = cell(append(b, fi.GetGroup()...), from, wGroup)
		from = len(b)
		b = cell(strconv.AppendInt(b, fi.GetLength(), 10), from, wLen)
		from = len(b)
		b = cell(append(b, persistText(fi)...), from, wPersist)
		from = len(b)
		b = cell(append(b, r.mtime...), from, wTime)
		from = len(b)
		b = cell(r.cached(b), from, wCached)
		b = append(b, fi.GetPath()...)
		b = append(b, '\n')
		if len(b) >= 32<<10 {
			if _, err := p.w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	p.buf = b[:0]
	_, err := p.w.Write(b)
	return err
}

func newLsCmd(g *globals) *cobra.Command {
	var recursive, sync bool
	var output string
	c := &cobra.Command{
		Use:   "ls [PATH...]",
		Short: "List directories (default /; a file lists as itself)",
		Long: `List the children of each directory, or with -R its whole subtree. Columns:
mode, owner, group, size, persistence state, modification time, share
cached, path. Paths in the UFS that Alluvium has not seen yet are loaded on
the way (they show as PERSISTED, 0% cached). A directory already listed is
not read from the UFS again (unless fsmaster.ufs-sync-interval has passed);
-f/--sync syncs each listed directory with the UFS first, so files added,
changed or deleted there behind Alluvium's back show. Listings stream page
by page, so a directory of millions of entries starts printing at once.

--output json prints one JSON array of objects with path, isDir, length,
persisted, cachedPercent and blocks[].locations[] (plus more fields).`,
		Example: `  alluvium fs ls /
  alluvium fs ls -R /data
  alluvium fs ls --sync /data        # see what changed in the UFS
  alluvium fs ls --output json /data | jq '.[] | select(.cachedPercent < 100) | .path'`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{"/"}
			}
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			// Buffered: a tree of millions is not a write per cell.
			bw := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
			defer bw.Flush()
			out := io.Writer(bw)
			if output == "json" {
				// Stream the array: no listing is held whole.
				fmt.Fprint(out, "[")
				n := 0
				for _, p := range args {
					for fi, err := range c.List(cmd.Context(), p, sdk.ListOptions{Recursive: recursive, IncludeBlocks: true, Sync: sync}) {
						if err != nil {
							fmt.Fprintln(out, "]")
							return cliErr(err)
						}
						b, err := json.Marshal(fileview.FromInfo(fi))
						if err != nil {
							return err
						}
						if n > 0 {
							fmt.Fprint(out, ",")
						}
						fmt.Fprint(out, "\n  ", string(b))
						n++
					}
				}
				if n > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintln(out, "]")
				return nil
			}
			pr := &lsPrinter{w: out}
			defer pr.flush()
			for _, p := range args {
				rows := 0
				// A whole tree goes in the SDK's big recursive pages.
				for fi, err := range c.List(cmd.Context(), p, sdk.ListOptions{Recursive: recursive, Sync: sync}) {
					if err != nil {
						return cliErr(err)
					}
					pr.line(fi)
					if rows++; rows%1000 == 0 {
						pr.flush() // the listing streams as it comes
						bw.Flush()
					}
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "R", false, "list whole subtrees")
	c.Flags().BoolVarP(&sync, "sync", "f", false, "sync each listed directory with the UFS first (new, changed and deleted UFS files)")
	c.Flags().StringVar(&output, "output", "", "output format: json (default: text)")
	return c
}

func newStatCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "stat PATH",
		Short: "Show the status of a file or directory, with its blocks and their locations",
		Long: `Show a path's status: type, length, block size, persistence, share cached,
UFS path, and each block with the workers (and tiers) that hold it.
--output json prints one JSON object (path, isDir, length, persisted,
cachedPercent, blocks[].locations[], ...).`,
		Example: `  alluvium fs stat /data/file.csv
  alluvium fs stat --output json /data/file.csv | jq .cachedPercent`,
		Args: exactArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			fi, err := c.Stat(cmd.Context(), args[0])
			if err != nil {
				return cliErr(err)
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), fileview.FromInfo(fi))
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			defer w.Flush()
			kind := "file"
			if fi.GetFolder() {
				kind = "directory"
				if fi.GetMountPoint() {
					kind = "directory (mount point)"
				}
			}
			fmt.Fprintf(w, "Path\t%s\n", fi.GetPath())
			fmt.Fprintf(w, "Type\t%s\n", kind)
			fmt.Fprintf(w, "Id\t%d\n", fi.GetFileId())
			fmt.Fprintf(w, "Mode\t%s %s:%s\n", modeString(fi.GetFolder(), fi.GetMode()), fi.GetOwner(), fi.GetGroup())
			fmt.Fprintf(w, "Persistence\t%s\n", persistText(fi))
			fmt.Fprintf(w, "UFS path\t%s\n", fi.GetUfsPath())
			fmt.Fprintf(w, "Modified\t%s\n", time.UnixMilli(fi.GetLastModificationTimeMs()).Format(time.RFC3339))
			if fi.GetFolder() {
				fmt.Fprintf(w, "Children\t%d\n", fi.GetChildCount())
				return nil
			}
			fmt.Fprintf(w, "Length\t%d\n", fi.GetLength())
			fmt.Fprintf(w, "Completed\t%v\n", fi.GetCompleted())
			fmt.Fprintf(w, "Block size\t%d\n", fi.GetBlockSizeBytes())
			fmt.Fprintf(w, "Cached\t%d%% (%d%% in memory)\n", fi.GetCachedPercent(), fi.GetInMemoryPercent())
			fmt.Fprintf(w, "Pinned\t%v\n", fi.GetPinned())
			if fp := fi.GetUfsFingerprint(); fp != "" {
				fmt.Fprintf(w, "UFS fingerprint\t%s\n", fp)
			}
			for _, b := range fi.GetFileBlockInfos() {
				var locs []string
				for _, l := range b.GetBlockInfo().GetLocations() {
					locs = append(locs, fmt.Sprintf("worker %d %s:%d %s", l.GetWorkerId(), l.GetAddress().GetHost(), l.GetAddress().GetRpcPort(), l.GetTier()))
				}
				where := "not cached"
				if len(locs) > 0 {
					where = strings.Join(locs, "; ")
				}
				fmt.Fprintf(w, "Block %d\toffset %d, length %d: %s\n", b.GetBlockInfo().GetBlockId(), b.GetOffset(), b.GetBlockInfo().GetLength(), where)
			}
			return nil
		},
	}
	c.Flags().StringVar(&output, "output", "", "output format: json (default: text)")
	return c
}

func newMkdirCmd(g *globals) *cobra.Command {
	var parents bool
	var writeType string
	c := &cobra.Command{
		Use:   "mkdir PATH...",
		Short: "Create directories (-p: with parents, existing ones are fine)",
		Long: `Create directories. With --write-type THROUGH or CACHE_THROUGH (the default
of fsmaster.user.write-type) the directory is created in the UFS too.`,
		Example: `  alluvium fs mkdir /data
  alluvium fs mkdir -p /data/2024/01/02
  alluvium fs mkdir --write-type MUST_CACHE /scratch`,
		Args: minArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			wt, err := parseWriteType(writeType)
			if err != nil {
				return err
			}
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, p := range args {
				if _, err := c.Mkdir(cmd.Context(), p, sdk.MkdirOptions{Parents: parents, WriteType: wt}); err != nil {
					return cliErr(err)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&parents, "parents", "p", false, "create missing parents; an existing directory is not an error")
	c.Flags().StringVar(&writeType, "write-type", "", "MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH (default: the master's)")
	return c
}

func newRmCmd(g *globals) *cobra.Command {
	var recursive, alluviumOnly bool
	c := &cobra.Command{
		Use:   "rm PATH...",
		Short: "Remove files or directories (-r: with everything below)",
		Long: `Remove files, or directories with -r. The path is removed from the UFS too,
unless --alluvium-only (then only Alluvium forgets it; the UFS keeps it). The
cached blocks are dropped from the workers. A mount point is removed with
'fs unmount', not rm.`,
		Example: `  alluvium fs rm /data/old.csv
  alluvium fs rm -r /data/2023
  alluvium fs rm -r --alluvium-only /data/cache-only-view`,
		Args: minArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, p := range args {
				if err := c.Delete(cmd.Context(), p, sdk.DeleteOptions{Recursive: recursive, AlluviumOnly: alluviumOnly}); err != nil {
					return cliErr(err)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and everything below them")
	c.Flags().BoolVar(&alluviumOnly, "alluvium-only", false, "leave the UFS untouched")
	return c
}

func newMvCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mv SRC DST",
		Short: "Rename a file or directory (atomic; into DST when DST is a directory)",
		Long: `Rename SRC to DST atomically, in the UFS too when SRC is persisted. When DST
is an existing directory, SRC moves into it. Both must be in the same mount;
to move across mounts use 'alluvium job submit move'.`,
		Example: `  alluvium fs mv /data/a.csv /data/b.csv
  alluvium fs mv /data/a.csv /archive/`,
		Args: exactArgs(2, "SRC", "DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			src, dst := args[0], args[1]
			if fi, err := c.Stat(cmd.Context(), dst); err == nil && fi.GetFolder() {
				if s, err := paths.Clean(src); err == nil && s != "/" {
					_, name := paths.Split(s)
					dst = paths.Join(fi.GetPath(), name)
				}
			}
			if _, err := c.Rename(cmd.Context(), src, dst); err != nil {
				return cliErr(err)
			}
			return nil
		},
	}
}

func newMountCmd(g *globals) *cobra.Command {
	var options []string
	var readOnly, shared bool
	c := &cobra.Command{
		Use:   "mount [PATH URI]",
		Short: "Mount a UFS at a new path (no arguments: list the mounts)",
		Long: `Attach the under storage at URI (file:///dir or s3://bucket/prefix) to PATH,
which must not exist yet. Its files appear on first ls/stat. Options go to
the UFS (e.g. s3 endpoint and credentials). Without arguments, print the
mount table.`,
		Example: `  alluvium fs mount /archive file:///mnt/archive --readonly
  alluvium fs mount /s3 s3://bucket/prefix --option endpoint=http://127.0.0.1:9000 --option access-key=K --option secret-key=S
  alluvium fs mount`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return usagef("%s: want PATH URI, or nothing to list the mounts (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := map[string]string{}
			for _, o := range options {
				k, v, ok := strings.Cut(o, "=")
				if !ok || k == "" {
					return usagef("--option %q: want key=value", o)
				}
				opts[k] = v
			}
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			if len(args) == 0 {
				ms, err := c.Mounts(cmd.Context())
				if err != nil {
					return cliErr(err)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				defer w.Flush()
				for _, m := range ms {
					flags := "rw"
					if m.GetReadOnly() {
						flags = "ro"
					}
					fmt.Fprintf(w, "%s\ton %s\t(%s, id %d)\n", m.GetUfsUri(), m.GetAlluviumPath(), flags, m.GetMountId())
				}
				return nil
			}
			m, err := c.Mount(cmd.Context(), args[0], args[1], sdk.MountOptions{Options: opts, ReadOnly: readOnly, Shared: shared})
			if err != nil {
				return cliErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mounted %s at %s (mount id %d)\n", m.GetUfsUri(), m.GetAlluviumPath(), m.GetMountId())
			return nil
		},
	}
	c.Flags().StringArrayVar(&options, "option", nil, "UFS option key=value (repeatable)")
	c.Flags().BoolVar(&readOnly, "readonly", false, "refuse writes under the mount")
	c.Flags().BoolVar(&shared, "shared", false, "the UFS is shared with other users")
	return c
}

func newUnmountCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "unmount PATH",
		Short:   "Detach a mount (its files leave Alluvium; the UFS keeps them)",
		Example: `  alluvium fs unmount /archive`,
		Args:    exactArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			return cliErr(c.Unmount(cmd.Context(), args[0]))
		},
	}
}

// setAttr runs one SetAttribute per path.
func setAttr(cmd *cobra.Command, g *globals, args []string, fill func(*api.SetAttributeRequest)) error {
	c, err := metaClient(cmd, g)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, p := range args {
		req := &api.SetAttributeRequest{Path: p}
		fill(req)
		if _, err := c.SetAttribute(cmd.Context(), req); err != nil {
			return cliErr(err)
		}
	}
	return nil
}

func newChmodCmd(g *globals) *cobra.Command {
	var recursive bool
	c := &cobra.Command{
		Use:   "chmod MODE PATH...",
		Short: "Change the permission mode (octal) of files and directories",
		Example: `  alluvium fs chmod 750 /data
  alluvium fs chmod -R 640 /data/reports`,
		Args: minArgs(2, "MODE", "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := strconv.ParseUint(args[0], 8, 32)
			if err != nil || mode > 0o7777 {
				return usagef("chmod: mode %q: want octal digits such as 755", args[0])
			}
			m := uint32(mode)
			return setAttr(cmd, g, args[1:], func(r *api.SetAttributeRequest) { r.Mode = &m; r.Recursive = recursive })
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "R", false, "change whole subtrees")
	return c
}

func newChownCmd(g *globals) *cobra.Command {
	var recursive bool
	c := &cobra.Command{
		Use:   "chown OWNER[:GROUP] PATH...",
		Short: "Change the owner (and group) of files and directories",
		Example: `  alluvium fs chown alice /data/alice
  alluvium fs chown -R etl:analytics /data/reports`,
		Args: minArgs(2, "OWNER[:GROUP]", "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			owner, group, hasGroup := strings.Cut(args[0], ":")
			if owner == "" && (!hasGroup || group == "") {
				return usagef("chown: %q: want OWNER, OWNER:GROUP or :GROUP", args[0])
			}
			return setAttr(cmd, g, args[1:], func(r *api.SetAttributeRequest) {
				if owner != "" {
					r.Owner = &owner
				}
				if hasGroup && group != "" {
					r.Group = &group
				}
				r.Recursive = recursive
			})
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "R", false, "change whole subtrees")
	return c
}

func newPinCmd(g *globals, pin bool) *cobra.Command {
	use, short := "pin PATH...", "Pin files (their blocks are never evicted)"
	if !pin {
		use, short = "unpin PATH...", "Unpin files (their blocks may be evicted again)"
	}
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  alluvium fs " + strings.Fields(use)[0] + " /data/hot",
		Args:    minArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setAttr(cmd, g, args, func(r *api.SetAttributeRequest) { r.Pinned = &pin; r.Recursive = true })
		},
	}
}

func newSetTTLCmd(g *globals) *cobra.Command {
	var action string
	c := &cobra.Command{
		Use:   "setTtl PATH TTL",
		Short: "Free or delete a file or directory once it is TTL old",
		Long: `setTtl gives PATH a time to live, counted from its creation. Once it has run
out (the FS master checks every fsmaster.ttl-check-interval), PATH is deleted —
its subtree and its UFS copy too — or, with --action free, its cached blocks are
freed and the TTL cleared (a file not yet persisted is kept in the cache until it
is). TTL is milliseconds or a duration: 90000, 30s, 10m, 12h, 7d.`,
		Example: `  alluvium fs setTtl /tmp/scratch 12h
  alluvium fs setTtl --action free /warm/day-1 7d`,
		Args: exactArgs(2, "PATH", "TTL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := parseTTL(args[1])
			if err != nil {
				return usagef("setTtl: TTL %q: %v", args[1], err)
			}
			act := strings.ToUpper(action)
			if act != "FREE" && act != "DELETE" {
				return usagef("setTtl: --action %q: want free or delete", action)
			}
			return setAttr(cmd, g, args[:1], func(r *api.SetAttributeRequest) { r.Ttl = &ms; r.TtlAction = &act })
		},
	}
	c.Flags().StringVar(&action, "action", "delete", "what happens when the TTL runs out: delete or free")
	return c
}

func newUnsetTTLCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "unsetTtl PATH...",
		Short:   "Remove the time to live of files or directories",
		Example: "  alluvium fs unsetTtl /tmp/scratch",
		Args:    minArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			zero := int64(0)
			return setAttr(cmd, g, args, func(r *api.SetAttributeRequest) { r.Ttl = &zero })
		},
	}
}

// parseTTL reads milliseconds ("90000") or a duration ("30s", "12h", "7d")
// and returns milliseconds. Milliseconds are kept as given (a
// time.Duration would overflow past 292 years): the FS master refuses a TTL
// that ends after the year 9999.
func parseTTL(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms <= 0 {
			return 0, errors.New("must be positive")
		}
		return ms, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n <= 0 || n > 1e5 {
			return 0, errors.New("want a positive number of days up to 100000, e.g. 7d")
		}
		return int64(n * float64(24*time.Hour/time.Millisecond)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want milliseconds or a duration such as 30s, 10m, 12h, 7d")
	}
	if d < time.Millisecond {
		return 0, errors.New("must be at least 1ms")
	}
	return d.Milliseconds(), nil
}
