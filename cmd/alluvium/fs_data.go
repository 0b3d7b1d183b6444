package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/fileview"
	"github.com/alluvium/alluvium/internal/humanize"
	"github.com/alluvium/alluvium/sdk"
)

// fsDataCommands are the data commands: cat, put, get, free, location,
// copyFromLocal, copyToLocal.
func fsDataCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newCatCmd(g), newPutCmd(g), newGetCmd(g), newFreeCmd(g), newLocationCmd(g),
	}
}

// dataClient dials the cluster the way the config and flags say.
func dataClient(cmd *cobra.Command, g *globals) (*sdk.Client, *config.Config, error) {
	cfg, err := g.load(cmd)
	if err != nil {
		return nil, nil, err
	}
	c, err := dialCluster(cmd.Context(), cfg)
	if err != nil {
		return nil, nil, err
	}
	return c, cfg, nil
}

func parseWriteType(s string) (api.WriteType, error) {
	if s == "" {
		return api.WriteType_WRITE_TYPE_UNSPECIFIED, nil
	}
	v, ok := api.WriteType_value[strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	if !ok || v == 0 {
		return 0, usagef("--write-type %q: want MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH", s)
	}
	return api.WriteType(v), nil
}

// progressMin is the size from which copies draw a progress bar on a
// terminal.
const progressMin = 16 << 20

// withProgress wraps r with a progress bar on stderr when stderr is a
// terminal and the copy is big; done waits for the bar to finish drawing.
func withProgress(name string, total int64, r io.Reader) (io.Reader, func(ok bool)) {
	if total < progressMin || !term.IsTerminal(int(os.Stderr.Fd())) {
		return r, func(bool) {}
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
	pr, err := bar.ProxyReader(r)
	if err != nil {
		return r, func(bool) {}
	}
	return pr, func(ok bool) {
		if !ok {
			bar.Abort(false)
		}
		p.Wait()
	}
}

func newCatCmd(g *globals) *cobra.Command {
	var noCache bool
	c := &cobra.Command{
		Use:   "cat PATH...",
		Short: "Print files to stdout",
		Long: `Print the bytes of files to stdout. Cached blocks come from the worker holding
them; missing blocks are read from the UFS and cached on the way (unless
--no-cache).`,
		Example: `  alluvium fs cat /data/report.csv | head`,
		Args:    minArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := dataClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			rt := api.ReadType_CACHE
			if noCache {
				rt = api.ReadType_NO_CACHE
			}
			for _, p := range args {
				r, err := c.Open(cmd.Context(), p, sdk.OpenOptions{ReadType: rt})
				if err != nil {
					return err
				}
				_, err = io.Copy(cmd.OutOrStdout(), r)
				r.Close()
				if err != nil {
					return fmt.Errorf("cat %s: %w", p, err)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&noCache, "no-cache", false, "do not cache blocks read from the UFS")
	return c
}

type putOptions struct {
	writeType string
	blockSize string
	overwrite bool
	pinned    bool
	tier      string
	worker    string
}

func newPutCmd(g *globals) *cobra.Command {
	var o putOptions
	c := &cobra.Command{
		Use:     "put LOCAL PATH",
		Aliases: []string{"copyFromLocal"},
		Short:   "Copy a local file or directory into Alluvium",
		Long: `Copy a local file (or "-" for stdin) or a directory tree to an Alluvium path.
When PATH is an existing directory the file goes inside it. Missing parent
directories are created. The file appears only once all its bytes are
stored; a failed copy leaves nothing behind.

Write types: MUST_CACHE (cache only), CACHE_THROUGH (cache and UFS, the
default of most clusters), THROUGH (UFS only), ASYNC_THROUGH (cache now, the
job service persists it later).`,
		Example: `  alluvium fs put ./data.csv /data/data.csv
  alluvium fs put --write-type THROUGH ./logs /archive/logs
  tar c dir | alluvium fs put - /backups/dir.tar`,
		Args: exactArgs(2, "LOCAL", "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			wt, err := parseWriteType(o.writeType)
			if err != nil {
				return err
			}
			var bs int64
			if o.blockSize != "" {
				if bs, err = humanize.ParseBytes(o.blockSize); err != nil || bs <= 0 {
					return usagef("--block-size %q: want a positive size such as 64MiB", o.blockSize)
				}
			}
			c, _, err := dataClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			co := sdk.CreateOptions{WriteType: wt, BlockSize: bs, Overwrite: o.overwrite, Recursive: true,
				Pinned: o.pinned, Tier: o.tier, Worker: o.worker}
			return putPath(cmd.Context(), cmd, c, args[0], args[1], co)
		},
	}
	f := c.Flags()
	f.StringVar(&o.writeType, "write-type", "", "MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH (default: the master's fsmaster.user.write-type)")
	f.StringVar(&o.blockSize, "block-size", "", "block size of new files, e.g. 64MiB (default: the master's)")
	f.BoolVarP(&o.overwrite, "overwrite", "f", false, "replace existing files")
	f.BoolVar(&o.pinned, "pin", false, "pin the cached blocks (never evicted)")
	f.StringVar(&o.tier, "tier", "", "preferred tier for the cached blocks: MEM, SSD or HDD")
	f.StringVar(&o.worker, "worker", "", "cache on this block worker (host:port) instead of choosing")
	return c
}

func putPath(ctx context.Context, cmd *cobra.Command, c *sdk.Client, src, dst string, co sdk.CreateOptions) error {
	if src == "-" {
		return putFile(ctx, c, cmd.InOrStdin(), -1, "stdin", dst, co)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("put %s: %w", src, err)
	}
	if info, err := c.Stat(ctx, dst); err == nil && info.GetFolder() {
		dst = path.Join(dst, filepath.Base(src))
	}
	if !st.IsDir() {
		return putLocalFile(ctx, c, src, st.Size(), dst, co)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("put %s: %w", p, err)
		}
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		if d.IsDir() {
			_, err := c.Mkdir(ctx, target, sdk.MkdirOptions{Parents: true, WriteType: co.WriteType})
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("put %s: %w", p, err)
		}
		return putLocalFile(ctx, c, p, fi.Size(), target, co)
	})
}

func putLocalFile(ctx context.Context, c *sdk.Client, src string, size int64, dst string, co sdk.CreateOptions) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("put %s: %w", src, err)
	}
	defer f.Close()
	return putFile(ctx, c, f, size, src, dst, co)
}

func putFile(ctx context.Context, c *sdk.Client, r io.Reader, size int64, name, dst string, co sdk.CreateOptions) error {
	w, err := c.Create(ctx, dst, co)
	if err != nil {
		return err
	}
	pr, done := withProgress(path.Base(dst), size, r)
	_, err = io.Copy(w, pr)
	if err != nil {
		w.Abort()
		done(false)
		var se *sdk.Error
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("put %s: reading %s: %w", dst, name, err)
	}
	err = w.Close()
	done(err == nil)
	return err
}

func newGetCmd(g *globals) *cobra.Command {
	var noCache bool
	c := &cobra.Command{
		Use:     "get PATH LOCAL",
		Aliases: []string{"copyToLocal"},
		Short:   "Copy a file or directory from Alluvium to the local disk",
		Long: `Copy an Alluvium file or directory tree to a local path ("-" for stdout). When
LOCAL is an existing directory the copy goes inside it. Each local file is
written under a temporary name and renamed when complete, so a failed copy
leaves no partial file.`,
		Example: `  alluvium fs get /data/data.csv ./data.csv
  alluvium fs get /data ./backup/`,
		Args: exactArgs(2, "PATH", "LOCAL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := dataClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			rt := api.ReadType_CACHE
			if noCache {
				rt = api.ReadType_NO_CACHE
			}
			ctx := cmd.Context()
			src, dst := args[0], args[1]
			info, err := c.Stat(ctx, src)
			if err != nil {
				return err
			}
			if dst == "-" {
				if info.GetFolder() {
					return usagef("get %s -: a directory cannot go to stdout", src)
				}
				return catTo(ctx, c, src, rt, cmd.OutOrStdout())
			}
			if st, err := os.Stat(dst); err == nil && st.IsDir() {
				dst = filepath.Join(dst, info.GetName())
			}
			if !info.GetFolder() {
				return getFile(ctx, c, src, dst, info.GetLength(), rt)
			}
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("get %s: %w", src, err)
			}
			for fi, err := range c.List(ctx, src, sdk.ListOptions{Recursive: true}) {
				if err != nil {
					return err
				}
				rel := strings.TrimPrefix(strings.TrimPrefix(fi.GetPath(), src), "/")
				target := filepath.Join(dst, filepath.FromSlash(rel))
				if fi.GetFolder() {
					if err := os.MkdirAll(target, 0o755); err != nil {
						return fmt.Errorf("get %s: %w", fi.GetPath(), err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
					return fmt.Errorf("get %s: %w", fi.GetPath(), err)
				}
				if err := getFile(ctx, c, fi.GetPath(), target, fi.GetLength(), rt); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&noCache, "no-cache", false, "do not cache blocks read from the UFS")
	return c
}

func catTo(ctx context.Context, c *sdk.Client, src string, rt api.ReadType, w io.Writer) error {
	r, err := c.Open(ctx, src, sdk.OpenOptions{ReadType: rt})
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("get %s: %w", src, err)
	}
	return nil
}

func getFile(ctx context.Context, c *sdk.Client, src, dst string, size int64, rt api.ReadType) error {
	r, err := c.Open(ctx, src, sdk.OpenOptions{ReadType: rt})
	if err != nil {
		return err
	}
	defer r.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".alluvium-get-*")
	if err != nil {
		return fmt.Errorf("get %s: %w", src, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	pr, done := withProgress(path.Base(src), size, r)
	_, err = io.Copy(tmp, pr)
	done(err == nil)
	if err != nil {
		var se *sdk.Error
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("get %s to %s: %w", src, dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("get %s to %s: %w", src, dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("get %s to %s: %w", src, dst, err)
	}
	ok = true
	return nil
}

func newFreeCmd(g *globals) *cobra.Command {
	var recursive, force bool
	c := &cobra.Command{
		Use:   "free PATH",
		Short: "Drop the cached copies of files (the UFS keeps the bytes)",
		Long: `Free the cached blocks of a file, or of every file under a directory (as
Alluxio's free does; -r is accepted and changes nothing). Files not yet
persisted to the UFS, and pinned files, are refused unless --force, since
freeing them would lose their bytes (or their pin); then nothing is freed.`,
		Example: `  alluvium fs free /data/old.csv
  alluvium fs free /data/archive`,
		Args: exactArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := dataClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			// A directory is freed with everything under it: what a user
			// asking to free it means (Alluxio's shell does the same).
			n, err := c.Free(cmd.Context(), args[0], sdk.FreeOptions{Recursive: true, Force: force})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "freed %d block(s) of %s\n", n, args[0])
			return nil
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "accepted for compatibility: a directory is always freed with everything under it")
	c.Flags().BoolVar(&force, "force", false, "free unpersisted and pinned files too")
	return c
}

// locationJSON is `fs location --output json`: the blocks part of `fs stat
// --output json`, same field names.
type locationJSON struct {
	Path   string           `json:"path"`
	Length int64            `json:"length"`
	Blocks []fileview.Block `json:"blocks"`
}

func newLocationCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "location PATH",
		Short: "Show which workers hold each block of a file",
		Example: `  alluvium fs location /data/data.csv
  alluvium fs location /data/data.csv --output json`,
		Args: exactArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return usagef("--output %q: want json", output)
			}
			c, _, err := dataClient(cmd, g)
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.Stat(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if info.GetFolder() {
				return fmt.Errorf("location %s: is a directory", args[0])
			}
			out := locationJSON{Path: info.GetPath(), Length: info.GetLength(), Blocks: fileview.FromInfo(info).Blocks}
			w := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BLOCK\tOFFSET\tLENGTH\tLOCATIONS")
			for _, b := range out.Blocks {
				var locs []string
				for _, l := range b.Locations {
					locs = append(locs, fmt.Sprintf("worker %d %s:%d %s", l.WorkerID, l.Host, l.RPCPort, l.Tier))
				}
				if len(locs) == 0 {
					locs = []string{"(not cached)"}
				}
				fmt.Fprintf(tw, "%d\t%d\t%d\t%s\n", b.ID, b.Offset, b.Length, strings.Join(locs, ", "))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "json: print one JSON object")
	return c
}
