// Command checksum-plan is an example plan plugin: it computes the SHA-256
// of every file under a path, on the job worker beside the block worker
// caching the file, and writes "path<TAB>sha256" lines (sorted by path) to
// a result file in the namespace.
//
// Build it into plans.dir on the job masters and job workers (default
// <home>/plans), restart them, and submit:
//
//	go build -o ~/.alluvium/plans/checksum ./sdk/examples/checksum-plan
//	alluvium job plans
//	alluvium job submit checksum --config '{"path":"/data","result":"/sums/data.tsv"}' --wait
//
// Each task hashes up to batchFiles files cached on one block worker and
// writes its lines to <result>.parts/<task id> (a retried task overwrites
// its part); when every task has ended, Done merges the parts into the
// result file and removes them.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/sdk/planplugin"
)

// version changes when what the plan does changes: job workers run a
// job's tasks only at the version it was submitted with.
const version = "1.0.0"

func main() { planplugin.Serve(checksum{}) }

type checksum struct{}

// config is the job's config.
type config struct {
	Path       string `json:"path"`
	Result     string `json:"result"`
	BatchFiles int    `json:"batchFiles,omitempty"` // files per task (default 64)
	// SlowFileMs and SlowPlanMs slow each file and each planning call
	// down: for demos and tests of retries, timeouts and failover.
	SlowFileMs int `json:"slowFileMs,omitempty"`
	SlowPlanMs int `json:"slowPlanMs,omitempty"`
}

// cursor is where planning stands: the listing's next page.
type cursor struct {
	Token string `json:"token,omitempty"`
	Files int64  `json:"files,omitempty"` // planned so far
}

type item struct {
	Path   string `json:"p"`
	Length int64  `json:"l"`
}

type args struct {
	Files []item `json:"files"`
}

// output is what a task reports (job stat -v).
type output struct {
	Worker string   `json:"worker"` // the block worker beside the job worker that ran it
	Files  []string `json:"files"`
}

func (checksum) Info() planplugin.Info {
	return planplugin.Info{Name: "checksum", Version: version,
		Description: "SHA-256 of every file under path, where it is cached, as path<TAB>sha256 lines in result"}
}

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, "checksum: "+format, a...)
}

func decode(b []byte) (config, error) {
	var c config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, invalid("config: %v", err)
	}
	for _, p := range []*string{&c.Path, &c.Result} {
		if !strings.HasPrefix(*p, "/") {
			return c, invalid("config: path and result must be absolute paths (got %q, %q)", c.Path, c.Result)
		}
		*p = path.Clean(*p)
	}
	if c.Result == c.Path || strings.HasPrefix(c.Result, strings.TrimSuffix(c.Path, "/")+"/") {
		return c, invalid("result %s is under path %s: it would checksum itself", c.Result, c.Path)
	}
	if c.BatchFiles == 0 {
		c.BatchFiles = 64
	}
	if c.BatchFiles < 1 || c.BatchFiles > 10000 {
		return c, invalid("batchFiles %d: want 1..10000", c.BatchFiles)
	}
	if c.SlowFileMs < 0 || c.SlowPlanMs < 0 || c.SlowFileMs > 60000 || c.SlowPlanMs > 60000 {
		return c, invalid("slowFileMs and slowPlanMs: want 0..60000")
	}
	return c, nil
}

func (checksum) Validate(ctx context.Context, h planplugin.Host, b []byte) (planplugin.Valid, error) {
	c, err := decode(b)
	if err != nil {
		return planplugin.Valid{}, err
	}
	if _, err := h.Stat(ctx, c.Path); err != nil {
		return planplugin.Valid{}, err
	}
	// The submitter must be able to read everything it asks to hash.
	if err := h.CheckAccess(ctx, c.Path, 4, true); err != nil {
		return planplugin.Valid{}, err
	}
	out, _ := json.Marshal(c)
	return planplugin.Valid{Config: out}, nil
}

// Plan lists one page of the tree (at most max files) and groups its
// files per block worker caching them, batchFiles to a task.
func (checksum) Plan(ctx context.Context, h planplugin.Host, job planplugin.Job, max int) (planplugin.Batch, error) {
	c, err := decode(job.Config)
	if err != nil {
		return planplugin.Batch{}, err
	}
	var cur cursor
	if len(job.Cursor) > 0 {
		if err := json.Unmarshal(job.Cursor, &cur); err != nil {
			return planplugin.Batch{}, status.Errorf(codes.Internal, "checksum: bad cursor: %v", err)
		}
	}
	if err := sleep(ctx, c.SlowPlanMs); err != nil {
		return planplugin.Batch{}, err
	}
	root, err := h.Stat(ctx, c.Path)
	if err != nil {
		return planplugin.Batch{}, err
	}
	var files []*planplugin.File
	next := ""
	if root.GetFolder() {
		files, next, err = h.List(ctx, c.Path, cur.Token, min(max, 1000), true)
		if err != nil {
			return planplugin.Batch{}, err
		}
	} else {
		files = []*planplugin.File{root}
	}
	type group struct {
		id    int64
		addr  string
		files []item
		bytes int64
	}
	groups := map[int64]*group{}
	var order []int64
	var b planplugin.Batch
	flush := func(g *group) {
		a, _ := json.Marshal(args{Files: g.files})
		desc := g.files[0].Path
		if len(g.files) > 1 {
			desc = fmt.Sprintf("%s (+%d more)", desc, len(g.files)-1)
		}
		b.Tasks = append(b.Tasks, planplugin.TaskSpec{Args: a, Description: desc, Bytes: g.bytes, BlockWorkerID: g.id, BlockWorkerAddress: g.addr})
		g.files, g.bytes = nil, 0
	}
	for _, f := range files {
		if f.GetFolder() {
			continue
		}
		id, addr := planplugin.Holder(f)
		g := groups[id]
		if g == nil {
			g = &group{id: id, addr: addr}
			groups[id] = g
			order = append(order, id)
		}
		g.files = append(g.files, item{Path: f.GetPath(), Length: f.GetLength()})
		g.bytes += f.GetLength()
		cur.Files++
		if len(g.files) == c.BatchFiles {
			flush(g)
		}
	}
	for _, id := range order {
		if g := groups[id]; len(g.files) > 0 {
			flush(g)
		}
	}
	cur.Token = next
	b.Cursor, _ = json.Marshal(cur)
	b.Done = next == ""
	return b, nil
}

// Run hashes the task's files and writes their lines to its part file.
func (checksum) Run(ctx context.Context, h planplugin.Host, t planplugin.Task) (planplugin.Result, error) {
	c, err := decode(t.Config)
	if err != nil {
		return planplugin.Result{}, err
	}
	var a args
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return planplugin.Result{}, status.Errorf(codes.Internal, "checksum: bad task args: %v", err)
	}
	var lines bytes.Buffer
	var res planplugin.Result
	out := output{Worker: t.LocalBlockWorker}
	for _, it := range a.Files {
		if err := sleep(ctx, c.SlowFileMs); err != nil {
			return res, err
		}
		sum, n, err := hash(ctx, h, it.Path)
		if err != nil {
			res.Failed = append(res.Failed, planplugin.FailedPath{Path: it.Path, Error: err.Error()})
			return res, err
		}
		fmt.Fprintf(&lines, "%s\t%s\n", it.Path, sum)
		res.Bytes += n
		out.Files = append(out.Files, it.Path)
		_ = h.Progress(ctx, res.Bytes)
	}
	w, err := h.Create(ctx, fmt.Sprintf("%s.parts/%08d", c.Result, t.TaskID), true)
	if err != nil {
		return res, err
	}
	if _, err := w.Write(lines.Bytes()); err != nil {
		return res, err
	}
	if err := w.Close(); err != nil {
		return res, err
	}
	res.Output, _ = json.Marshal(out)
	return res, nil
}

func hash(ctx context.Context, h planplugin.Host, p string) (string, int64, error) {
	r, err := h.Open(ctx, p)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	s := sha256.New()
	n, err := io.Copy(s, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(s.Sum(nil)), n, nil
}

// Done merges the parts into the result file, sorted by path.
// planned is how many files the job's planning covered (its cursor's
// count).
func planned(job planplugin.Job) int64 {
	var cur cursor
	_ = json.Unmarshal(job.Cursor, &cur)
	return cur.Files
}

func (checksum) Done(ctx context.Context, h planplugin.Host, job planplugin.Job) (bool, error) {
	c, err := decode(job.Config)
	if err != nil {
		return true, err
	}
	parts := c.Result + ".parts"
	var lines []string
	if _, err := h.Stat(ctx, parts); err == nil {
		token := ""
		for {
			fs, next, err := h.List(ctx, parts, token, 1000, false)
			if err != nil {
				return true, err
			}
			for _, f := range fs {
				r, err := h.Open(ctx, f.GetPath())
				if err != nil {
					return true, err
				}
				sc := bufio.NewScanner(r)
				for sc.Scan() {
					lines = append(lines, sc.Text())
				}
				r.Close()
				if err := sc.Err(); err != nil {
					return true, err
				}
			}
			if next == "" {
				break
			}
			token = next
		}
	} else if status.Code(err) != codes.NotFound {
		return true, err
	} else if planned(job) > 0 {
		if _, err := h.Stat(ctx, c.Result); err == nil {
			// Files were checksummed and their parts are gone: an earlier
			// Done of this job merged them and deleted them, and its answer
			// was lost (a job-master failover); the result stands.
			return true, nil
		}
	}
	sort.Strings(lines)
	w, err := h.Create(ctx, c.Result, true)
	if err != nil {
		return true, err
	}
	// Lines go out in big writes: each Write to the host is a message.
	bw := bufio.NewWriterSize(w, 1<<20)
	for _, l := range lines {
		if _, err := bw.WriteString(l + "\n"); err != nil {
			return true, err
		}
	}
	if err := bw.Flush(); err != nil {
		return true, err
	}
	if err := w.Close(); err != nil {
		return true, err
	}
	if err := h.Delete(ctx, parts, true); err != nil && status.Code(err) != codes.NotFound {
		return true, err
	}
	return true, nil
}

func sleep(ctx context.Context, ms int) error {
	if ms <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
