// Command noop-plan is the built-in noop plan (plans/noop.go) as a plan
// plugin: the smallest plugin that plans over files by locality. It lists
// every file under a path page by page, batches the files per block
// worker caching most of each (batchFiles files or batchBytes bytes to a
// task, placed beside that worker), and its tasks do nothing but count
// their files. The benchmark of plugin overhead (tests/bench
// PluginOverhead) runs it against the built-in plan over the same files:
// what differs is the plugin machinery alone.
//
//	go build -o ~/.alluvium/plans/noop-plugin ./sdk/examples/noop-plan
//	alluvium job submit noop-plugin --config '{"path":"/data"}' --wait
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/sdk/planplugin"
)

const version = "1.0.0"

func main() { planplugin.Serve(noop{}) }

type noop struct{}

// config is the built-in noop plan's (plans/spec NoopConfig), defaults
// included.
type config struct {
	Path       string `json:"path"`
	BatchFiles int    `json:"batchFiles,omitempty"`
	BatchBytes int64  `json:"batchBytes,omitempty"`
	PageSize   int    `json:"pageSize,omitempty"`
}

// cursor is where planning stands: the last path listed.
type cursor struct {
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"` // the root was a file, planned
}

// item and args are the built-in plan's task arguments, field for field.
type item struct {
	Path   string `json:"p"`
	Length int64  `json:"l"`
}

type args struct {
	Worker  int64  `json:"w,omitempty"`
	Address string `json:"a,omitempty"`
	Items   []item `json:"i"`
}

type output struct {
	Files int `json:"files"`
}

func (noop) Info() planplugin.Info {
	return planplugin.Info{Name: "noop-plugin", Version: version,
		Description: "the noop plan as a plugin: tasks over every file under path, beside its data, doing nothing"}
}

func decode(b []byte) (config, error) {
	var c config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, status.Errorf(codes.InvalidArgument, "noop-plugin: config: %v", err)
	}
	if !strings.HasPrefix(c.Path, "/") {
		return c, status.Errorf(codes.InvalidArgument, "noop-plugin: config: path must be absolute (got %q)", c.Path)
	}
	c.Path = path.Clean(c.Path)
	if c.BatchFiles == 0 {
		c.BatchFiles = 64
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 64 << 20
	}
	if c.PageSize == 0 {
		c.PageSize = 1000
	}
	if c.BatchFiles < 1 || c.BatchBytes < 1 || c.PageSize < 1 || c.PageSize > 100000 {
		return c, status.Errorf(codes.InvalidArgument, "noop-plugin %s: batchFiles, batchBytes and pageSize must be positive (pageSize <= 100000)", c.Path)
	}
	return c, nil
}

func (noop) Validate(ctx context.Context, h planplugin.Host, b []byte) (planplugin.Valid, error) {
	c, err := decode(b)
	if err != nil {
		return planplugin.Valid{}, err
	}
	if _, err := h.Stat(ctx, c.Path); err != nil {
		return planplugin.Valid{}, err
	}
	if err := h.CheckAccess(ctx, c.Path, 4, true); err != nil {
		return planplugin.Valid{}, err
	}
	out, _ := json.Marshal(c)
	// Done is trivial (one round), as the built-in plan's: the job ends
	// with its last task.
	return planplugin.Valid{Config: out, EndsWithTasks: true}, nil
}

// batch is the open task of one block worker.
type batch struct {
	id    int64
	addr  string
	items []item
	first string
	bytes int64
}

// Plan lists one page after the cursor and batches its files per holder;
// every call ends with its batches flushed, so the cursor is exact.
func (noop) Plan(ctx context.Context, h planplugin.Host, job planplugin.Job, max int) (planplugin.Batch, error) {
	c, err := decode(job.Config)
	if err != nil {
		return planplugin.Batch{}, err
	}
	var cur cursor
	if len(job.Cursor) > 0 {
		if err := json.Unmarshal(job.Cursor, &cur); err != nil {
			return planplugin.Batch{}, status.Errorf(codes.Internal, "noop-plugin: bad cursor: %v", err)
		}
	}
	var files []*planplugin.File
	next := ""
	if cur.After == "" && !cur.Done {
		// The first call stats the root, as the built-in walk does: a
		// file is planned as itself.
		root, err := h.Stat(ctx, c.Path)
		if err != nil {
			return planplugin.Batch{}, err
		}
		if !root.GetFolder() {
			files = []*planplugin.File{root}
			cur.Done = true
		}
	}
	if !cur.Done {
		files, next, err = h.List(ctx, c.Path, cur.After, c.PageSize, true)
		if err != nil {
			return planplugin.Batch{}, err
		}
	}
	var b planplugin.Batch
	open := map[int64]*batch{}
	flush := func(ob *batch) {
		delete(open, ob.id)
		a, _ := json.Marshal(args{Worker: ob.id, Address: ob.addr, Items: ob.items})
		desc := ob.first
		if len(ob.items) > 1 {
			desc = fmt.Sprintf("%s (+%d more)", desc, len(ob.items)-1)
		}
		b.Tasks = append(b.Tasks, planplugin.TaskSpec{Args: a, Description: desc, Bytes: ob.bytes, BlockWorkerID: ob.id, BlockWorkerAddress: ob.addr})
	}
	for _, f := range files {
		if f.GetFolder() {
			continue
		}
		id, addr := planplugin.Holder(f)
		ob := open[id]
		if ob != nil && (len(ob.items) >= c.BatchFiles || ob.bytes+f.GetLength() > c.BatchBytes) {
			flush(ob)
			ob = nil
		}
		if ob == nil {
			ob = &batch{id: id, addr: addr, first: f.GetPath(), items: make([]item, 0, min(c.BatchFiles, 1024))}
			open[id] = ob
		}
		ob.items = append(ob.items, item{Path: f.GetPath(), Length: f.GetLength()})
		ob.bytes += f.GetLength()
		if len(ob.items) >= c.BatchFiles || ob.bytes >= c.BatchBytes {
			flush(ob)
		}
	}
	ids := make([]int64, 0, len(open))
	for id := range open {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		flush(open[id])
	}
	if len(b.Tasks) > max {
		// A page of pageSize files makes at most pageSize tasks; a job
		// master asking for fewer gets a smaller page next time.
		return planplugin.Batch{}, status.Errorf(codes.FailedPrecondition, "noop-plugin: %d tasks planned, %d asked: lower pageSize", len(b.Tasks), max)
	}
	if next != "" {
		cur.After = next
	}
	b.Cursor, _ = json.Marshal(cur)
	b.Done = cur.Done || next == ""
	return b, nil
}

// Run decodes its files and reports them done, reading none.
func (noop) Run(_ context.Context, _ planplugin.Host, t planplugin.Task) (planplugin.Result, error) {
	var a args
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return planplugin.Result{}, status.Errorf(codes.Internal, "noop-plugin task %d/%d: bad args: %v", t.JobID, t.TaskID, err)
	}
	var res planplugin.Result
	for _, it := range a.Items {
		res.Bytes += it.Length
	}
	res.Output, _ = json.Marshal(output{Files: len(a.Items)})
	return res, nil
}

func (noop) Done(context.Context, planplugin.Host, planplugin.Job) (bool, error) { return true, nil }
