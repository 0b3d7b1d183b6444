// Command demo is `make demo`, the first thing a newcomer runs: it starts an
// all-in-one cluster (`alluvium local`) on generated sample data, runs a
// load, a copy, a Go step (it writes an index file, cache only) and a
// persist as one SDK pipeline, adds a cron policy that
// fires within seconds, prints a summary of what happened (jobs, bytes,
// times, cache state), checks the results, and stops the cluster — also on
// Ctrl-C or failure. Nothing is left running; the temporary directory is
// removed unless -keep.
//
//	make demo                               # builds bin/alluvium, then:
//	go run ./tests/demo -bin bin/alluvium   # -keep, -size 20MiB, -files 100, -workers 3
//
// It exits 0 only if every step worked and the results check out.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/humanize"
	"github.com/alluvium/alluvium/sdk"
)

// configTemplate is the cluster's config: each worker gets a small MEM tier
// (so part of the data lands on the HDD tier) and an HDD tier, both in
// directories the demo removes afterwards.
const configTemplate = `# written by the demo (tests/demo): alluvium local --config this-file
worker:
  tiers:
%s    - alias: HDD
      path: %s
      quota: 1GiB
log:
  level: warn
`

func main() { os.Exit(run()) }

func run() int {
	bin := flag.String("bin", "bin/alluvium", "the alluvium binary (make build)")
	files := flag.Int("files", 300, "sample files to generate")
	size := flag.String("size", "100MiB", "total size of the sample files")
	workers := flag.Int("workers", 2, "workers of the local cluster")
	keep := flag.Bool("keep", false, "keep the demo's directory (data, logs) afterwards")
	stay := flag.Bool("stay", false, "after the demo, keep the cluster up to look at in the web console, until Ctrl-C")
	timeout := flag.Duration("timeout", 110*time.Second, "give up (and stop everything) after this long")
	flag.Parse()
	total, err := humanize.ParseBytes(*size)
	if err != nil || total < 1<<20 || *files < 20 || *workers < 1 {
		fmt.Fprintln(os.Stderr, "usage: demo [-bin PATH] [-files N>=20] [-size BYTES>=1MiB] [-workers N] [-keep] [-stay] [-timeout D]")
		return 2
	}
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sig, *timeout)
	defer cancel()

	d := &demo{bin: *bin, nFiles: *files, total: total, workers: *workers, start: time.Now(), out: os.Stdout}
	err = d.run(ctx)
	if err == nil && *stay && d.ui != "" {
		d.logf("the cluster stays up: open the web console at %s and log in with ALLUVIUM_TOKEN from %s; Ctrl-C stops it", d.ui, filepath.Join(d.home, "env"))
		select {
		case <-sig.Done():
		case werr := <-d.exited:
			d.exited <- werr // for stopCluster
			err = fmt.Errorf("alluvium local exited while it should stay up: %v", werr)
		}
	}
	d.stopCluster()
	if *keep {
		d.logf("kept %s (cluster log: %s)", d.dir, d.logPath)
	} else if d.dir != "" {
		d.removeAll()
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (interrupted or over -timeout %s)", err, *timeout)
		}
		fmt.Fprintf(os.Stderr, "\ndemo FAILED after %s: %v\n", time.Since(d.start).Round(100*time.Millisecond), err)
		if d.logPath != "" && *keep {
			fmt.Fprintf(os.Stderr, "cluster log: %s\n", d.logPath)
		} else if d.logTail != "" {
			fmt.Fprintf(os.Stderr, "last lines of the cluster log:\n%s\n", d.logTail)
		}
		return 1
	}
	fmt.Fprintf(d.out, "\ndemo OK in %s\n", time.Since(d.start).Round(100*time.Millisecond))
	return 0
}

type demo struct {
	bin     string
	nFiles  int
	total   int64
	workers int
	start   time.Time
	out     io.Writer

	dir, home, ufs, shm string
	ui                  string // the web console's URL (ALLUVIUM_UI)
	logPath, logTail    string
	proc                *exec.Cmd
	exited              chan error

	client   *sdk.Client
	jobs     *sdk.Jobs
	policies *sdk.Policies
	sample   map[string]int64 // /raw/... → size
	hot      []string
	index    []byte // what the index step wrote
}

func (d *demo) logf(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintln(d.out, "== Alluvium demo: an all-in-one cluster, a load → copy → persist pipeline, a cron policy ==")
	var err error
	if d.dir, err = os.MkdirTemp("", "alluvium-demo-"); err != nil {
		return err
	}
	d.home, d.ufs = filepath.Join(d.dir, "home"), filepath.Join(d.dir, "ufs")
	if err := d.generate(); err != nil {
		return fmt.Errorf("sample data: %w", err)
	}
	// The closing step's plan plugin, in the cluster's plans.dir before it
	// starts (plugins are loaded at start).
	if err := d.buildPlugin(ctx); err != nil {
		return err
	}
	if err := d.startCluster(ctx); err != nil {
		return err
	}
	if err := d.pipeline(ctx); err != nil {
		return err
	}
	if err := d.policy(ctx); err != nil {
		return err
	}
	if err := d.summary(ctx); err != nil {
		return err
	}
	if err := d.verify(ctx); err != nil {
		return err
	}
	return d.checksum(ctx)
}

// buildPlugin builds the example plan plugin (sdk/examples/checksum-plan)
// into <home>/plans, where alluvium local loads it.
func (d *demo) buildPlugin(ctx context.Context) error {
	out := filepath.Join(d.home, "plans", "checksum")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/alluvium/alluvium/sdk/examples/checksum-plan")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the checksum plan plugin: %v\n%s", err, b)
	}
	return nil
}

// checksum is the closing step: a plan of the user's own — the example
// plugin — hashes every file of /curated on the worker caching it, and
// each line of its result matches the SHA-256 of the file in the UFS.
func (d *demo) checksum(ctx context.Context) error {
	fmt.Fprintln(d.out)
	const result = "/checksums/curated.tsv"
	start := time.Now()
	id, err := d.jobs.Submit(ctx, "checksum", map[string]any{"path": "/curated", "result": result})
	if err != nil {
		return fmt.Errorf("checksum plugin: submit: %w", err)
	}
	j, err := d.jobs.Wait(ctx, id, nil)
	if err != nil {
		return fmt.Errorf("checksum plugin: job %d: %w", id, err)
	}
	if j.GetStatus() != api.JobInfo_COMPLETED {
		return fmt.Errorf("checksum plugin: job %d %s: %s", id, j.GetStatus(), j.GetError())
	}
	r, err := d.client.Open(ctx, result, sdk.OpenOptions{})
	if err != nil {
		return fmt.Errorf("checksum plugin: open %s: %w", result, err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return fmt.Errorf("checksum plugin: read %s: %w", result, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		p, sum, ok := strings.Cut(l, "\t")
		if !ok {
			return fmt.Errorf("checksum plugin: line %q of %s is not path<TAB>sha256", l, result)
		}
		want, err := os.ReadFile(filepath.Join(d.ufs, strings.TrimPrefix(p, "/")))
		if err != nil {
			return fmt.Errorf("checksum plugin: %s: %w", p, err)
		}
		if h := sha256.Sum256(want); hex.EncodeToString(h[:]) != sum {
			return fmt.Errorf("checksum plugin: %s: %s, but the UFS file's SHA-256 is %x", p, sum, h)
		}
	}
	if len(lines) != len(d.sample)+1 { // and the index
		return fmt.Errorf("checksum plugin: %d lines in %s, want %d", len(lines), result, len(d.sample)+1)
	}
	d.logf("plan plugin: 'checksum' (sdk/examples/checksum-plan, loaded from %s) hashed %d files of /curated on the job workers, each beside the block worker caching it (or reading it through the cache) in %s (%d tasks); every line of %s matches sha256sum of the UFS file",
		filepath.Join(d.home, "plans"), len(lines), time.Since(start).Round(time.Millisecond), j.GetTasksTotal(), result)
	return nil
}

// generate writes the sample tree under <ufs>/raw: a few large files, some
// medium ones (those under hot/ are the policy's), many small ones, in
// nested directories; ~48% / 46% / 6% of the bytes. Deterministic.
func (d *demo) generate() error {
	rng := rand.New(rand.NewChaCha8([32]byte{'a', 'l', 'l', 'u', 'v', 'i', 'u', 'm'}))
	nLarge, nMedium := 4, d.nFiles/6
	nSmall := d.nFiles - nLarge - nMedium
	large, medium, small := d.total*48/100/int64(nLarge), d.total*46/100/int64(nMedium), d.total*6/100/int64(nSmall)
	d.sample = map[string]int64{}
	var sizes []struct {
		rel string
		n   int64
	}
	add := func(rel string, n int64) {
		sizes = append(sizes, struct {
			rel string
			n   int64
		}{rel, n})
	}
	for i := range nLarge {
		add(fmt.Sprintf("large/part-%02d.bin", i), large+int64(rng.IntN(4096)))
	}
	for i := range nMedium {
		dir := "medium"
		if i < 10 {
			dir = "hot"
		}
		add(fmt.Sprintf("%s/m-%03d.dat", dir, i), medium/2+rng.Int64N(medium))
	}
	for i := range nSmall {
		add(fmt.Sprintf("small/%02d/s-%04d.txt", i%16, i), 1+rng.Int64N(2*small))
	}
	buf := make([]byte, 0, large+4096)
	var sum int64
	for _, s := range sizes {
		p := filepath.Join(d.ufs, "raw", s.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		buf = buf[:s.n]
		for i := 0; i+8 <= len(buf); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return err
		}
		d.sample["/raw/"+s.rel] = s.n
		if strings.HasPrefix(s.rel, "hot/") {
			d.hot = append(d.hot, "/raw/"+s.rel)
		}
		sum += s.n
	}
	d.logf("sample data: %d files, %s under %s (%d large, %d medium of which %d in hot/, %d small)",
		len(sizes), humanize.Bytes(sum), filepath.Join(d.ufs, "raw"), nLarge, nMedium, len(d.hot), nSmall)
	return nil
}

// freePortBase finds 200 free ports in a row on 127.0.0.1.
func freePortBase() (int, error) {
	for range 50 {
		base := 20000 + rand.IntN(400)*100
		ok := true
		var ls []net.Listener
		for p := base; p < base+200 && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no 200 free ports in a row")
}

func (d *demo) startCluster(ctx context.Context) error {
	if _, err := os.Stat(d.bin); err != nil {
		return fmt.Errorf("-bin %s: %w (run 'make build' first)", d.bin, err)
	}
	base, err := freePortBase()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.home, 0o755); err != nil {
		return err
	}
	mem := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d.shm = filepath.Join("/dev/shm", filepath.Base(d.dir))
		mem = fmt.Sprintf("    - alias: MEM\n      path: %s\n      quota: 48MiB\n", d.shm)
	}
	conf := filepath.Join(d.home, "demo.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, configTemplate, mem, filepath.Join(d.dir, "tiers", "hdd")), 0o644); err != nil {
		return err
	}
	d.logPath = filepath.Join(d.dir, "local.log")
	logf, err := os.Create(d.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.proc = exec.Command(d.bin, "local", "--config", conf, "--home", d.home, "--ufs", d.ufs,
		"--port-base", fmt.Sprint(base), "--workers", fmt.Sprint(d.workers))
	d.proc.Stdout, d.proc.Stderr = logf, logf
	// Its own process group: Ctrl-C reaches the demo, which stops it cleanly.
	d.proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.proc.Start(); err != nil {
		return fmt.Errorf("start %s local: %w", d.bin, err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.proc.Wait() }()
	d.logf("started: %s local --home %s --ufs %s --port-base %d --workers %d", d.bin, d.home, d.ufs, base, d.workers)

	// Ready once it wrote <home>/env.
	envPath := filepath.Join(d.home, "env")
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(envPath); err == nil {
			break
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			return fmt.Errorf("alluvium local exited before it was ready: %v", err)
		case <-deadline.C:
			return errors.New("alluvium local not ready within 60s")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	env, err := readEnv(envPath)
	if err != nil {
		return err
	}
	if d.client, err = sdk.Dial(ctx, sdk.WithMaster(env["ALLUVIUM_MASTER"]), sdk.WithJobMasters(env["ALLUVIUM_JOB_MASTER"]),
		sdk.WithToken(env["ALLUVIUM_TOKEN"]), sdk.WithTimeout(20*time.Second)); err != nil {
		return err
	}
	if d.jobs, err = d.client.Jobs(); err != nil {
		return err
	}
	if d.policies, err = d.client.Policies(); err != nil {
		return err
	}
	d.ui = env["ALLUVIUM_UI"]
	d.logf("alluvium local is ready: FS master %s, job master %s, web console %s (env: %s)", env["ALLUVIUM_MASTER"], env["ALLUVIUM_JOB_MASTER"], d.ui, envPath)
	return nil
}

// readEnv parses the export lines of <home>/env.
func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export ")
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = strings.Trim(v, `'"`)
		}
	}
	if env["ALLUVIUM_MASTER"] == "" || env["ALLUVIUM_JOB_MASTER"] == "" {
		return nil, fmt.Errorf("%s names no masters:\n%s", path, b)
	}
	return env, nil
}

// stopCluster stops alluvium local with SIGTERM (SIGKILL to its group
// after 20s) and waits for it to exit.
func (d *demo) stopCluster() {
	if d.client != nil {
		d.client.Close()
	}
	if d.proc == nil || d.proc.Process == nil {
		return
	}
	select {
	case err := <-d.exited:
		d.logf("alluvium local had exited: %v", err)
	default:
		_ = d.proc.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.exited:
			if err != nil {
				d.logf("stopped alluvium local: %v", err)
			} else {
				d.logf("stopped alluvium local (clean exit)")
			}
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-d.proc.Process.Pid, syscall.SIGKILL)
			<-d.exited
			d.logf("alluvium local did not stop within 20s of SIGTERM: killed")
		}
	}
	if b, err := os.ReadFile(d.logPath); err == nil {
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		d.logTail = strings.Join(lines[max(0, len(lines)-30):], "\n")
	}
}

func (d *demo) removeAll() {
	for _, p := range []string{d.dir, d.shm} {
		if p != "" {
			if err := os.RemoveAll(p); err != nil {
				fmt.Fprintf(os.Stderr, "demo: removing %s: %v\n", p, err)
			}
		}
	}
	d.logf("removed %s", d.dir)
}

// pipeline warms /raw into the cache, copies it to /curated and persists
// /curated: three job steps, each after the one before, as one pipeline.
func (d *demo) pipeline(ctx context.Context) error {
	d.logf("pipeline \"demo\": warm-up (load /raw) → copy /raw to /curated → index (a Go step writes /curated/%s, cache only) → persist /curated", indexName)
	p := sdk.NewPipeline("demo",
		sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 2, Backoff: time.Second}),
		sdk.OnEvent(sdk.LogEvents(d.out)))
	p.Job("warm-up", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/raw"}})
	p.Job("copy", sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": "/raw", "dst": "/curated"}}, sdk.After("warm-up"))
	p.Func("index", d.writeIndex, sdk.After("copy"))
	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": "/curated"}}, sdk.After("index"))
	report, err := p.Run(ctx, d.client)
	if report != nil {
		fmt.Fprintln(d.out)
		fmt.Fprint(d.out, report)
		fmt.Fprintln(d.out)
	}
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// indexName is the file the pipeline's Go step writes into /curated.
const indexName = "INDEX.tsv"

// writeIndex lists /curated (path, bytes) into /curated/INDEX.tsv, written
// to the cache only (MUST_CACHE): the persist step then has work to do.
func (d *demo) writeIndex(ctx context.Context) error {
	var b bytes.Buffer
	n := 0
	for f, err := range d.client.List(ctx, "/curated", sdk.ListOptions{Recursive: true}) {
		if err != nil {
			return err
		}
		if !f.GetFolder() && f.GetPath() != "/curated/"+indexName {
			fmt.Fprintf(&b, "%s\t%d\n", f.GetPath(), f.GetLength())
			n++
		}
	}
	w, err := d.client.Create(ctx, "/curated/"+indexName, sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE, Overwrite: true})
	if err != nil {
		return err
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		w.Abort()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	d.index = b.Bytes()
	st, err := d.client.Stat(ctx, "/curated/"+indexName)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "[demo/index] wrote /curated/%s: %d files listed, %s, %s\n", indexName, n, humanize.Bytes(st.GetLength()), st.GetPersistenceState())
	return nil
}

// policy frees /raw/hot from the cache, adds a policy that loads it every
// two seconds, waits for it to fire and shows /raw/hot cached again.
func (d *demo) policy(ctx context.Context) error {
	// The workers report their usage at each heartbeat: take it from one
	// sent after the pipeline's jobs ended.
	usedBefore, err := d.usedBytes(ctx, time.Now())
	if err != nil {
		return err
	}
	if _, err := d.client.Free(ctx, "/raw/hot", sdk.FreeOptions{Recursive: true}); err != nil {
		return fmt.Errorf("free /raw/hot: %w", err)
	}
	// The FS master forgets the copies at once; the workers delete them at
	// their next heartbeat. Wait for that, so the policy's load is not
	// racing the deletes.
	var hotBytes int64
	for _, p := range d.hot {
		hotBytes += d.sample[p]
	}
	for {
		used, err := d.usedBytes(ctx, time.Time{})
		if err != nil {
			return err
		}
		if used <= usedBefore-hotBytes {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the workers to drop /raw/hot: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	before, err := d.cachedPercent(ctx, d.hot)
	if err != nil {
		return err
	}
	p, err := d.policies.Add(ctx, sdk.PolicySpec{Name: "refresh-hot", Cron: "*/2 * * * * *", Plan: "load", Config: sdk.LoadConfig{Path: "/raw/hot"}})
	if err != nil {
		return fmt.Errorf("policy add: %w", err)
	}
	d.logf("freed /raw/hot (cached %d%%); added policy %s: load /raw/hot on %q, next run %s",
		before, p.GetName(), p.GetCron(), time.UnixMilli(p.GetNextRunMs()).Format("15:04:05"))
	var jobID int64
	for jobID == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		p, err = d.policies.Get(ctx, "refresh-hot")
		if err != nil {
			return err
		}
		jobID = p.GetLastJobId()
	}
	j, err := d.jobs.Wait(ctx, jobID, nil)
	if err != nil {
		return fmt.Errorf("policy job %d: %w", jobID, err)
	}
	after, err := d.cachedPercent(ctx, d.hot)
	if err != nil {
		return err
	}
	d.logf("policy %s fired at %s: job %d %s (%d tasks, %s); /raw/hot cached %d%% → %d%%",
		p.GetName(), time.UnixMilli(p.GetLastRunMs()).Format("15:04:05"), j.GetId(), sdk.ToJSON(j).Status,
		j.GetTasksTotal(), humanize.Bytes(j.GetBytesDone()), before, after)
	if after != 100 {
		return fmt.Errorf("after the policy's load /raw/hot is %d%% cached, want 100%%", after)
	}
	if err := d.policies.Remove(ctx, "refresh-hot"); err != nil {
		return err
	}
	d.logf("removed policy %s after %d run(s)", p.GetName(), p.GetRuns())
	return nil
}

// usedBytes is what the workers' tiers hold, as they last reported, once
// every worker has reported after since.
func (d *demo) usedBytes(ctx context.Context, since time.Time) (int64, error) {
	for {
		ws, err := d.client.Workers(ctx)
		if err != nil {
			return 0, err
		}
		var n int64
		fresh := true
		for _, w := range ws {
			if w.GetLastHeartbeatMs() <= since.UnixMilli() {
				fresh = false
			}
			for _, t := range w.GetTiers() {
				n += t.GetUsedBytes()
			}
		}
		if fresh {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cachedPercent is the share of the bytes of paths that is cached.
func (d *demo) cachedPercent(ctx context.Context, paths []string) (int, error) {
	var total, cached int64
	for _, p := range paths {
		f, err := d.client.Stat(ctx, p)
		if err != nil {
			return 0, err
		}
		total += f.GetLength()
		cached += f.GetLength() * int64(f.GetCachedPercent()) / 100
	}
	if total == 0 {
		return 100, nil
	}
	return int(cached * 100 / total), nil
}

// summary prints every job and the cache state of each tree.
func (d *demo) summary(ctx context.Context) error {
	fmt.Fprintln(d.out, "\n== What happened ==")
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tPLAN\tWHAT\tBY\tSTATUS\tTASKS\tBYTES\tTIME\tRATE")
	for j, err := range d.jobs.List(ctx, sdk.ListJobsOptions{}) {
		if err != nil {
			return err
		}
		what := sdk.JobSubject(j)
		by := "pipeline"
		if j.GetPolicy() != "" {
			by = "policy " + j.GetPolicy()
		}
		took := time.Duration(j.GetFinishedMs()-j.GetCreatedMs()) * time.Millisecond
		rate := humanize.Rate(j.GetBytesDone(), took)
		if rate == "" {
			rate = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", j.GetId(), j.GetPlan(), what, by, sdk.ToJSON(j).Status,
			j.GetTasksDone(), j.GetTasksTotal(), humanize.Bytes(j.GetBytesDone()), took.Round(time.Millisecond), rate)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(d.out)
	tw = tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TREE\tFILES\tBYTES\tCACHED\tIN MEM\tPERSISTED")
	for _, root := range []string{"/raw", "/raw/hot", "/curated"} {
		var n, persisted, total, cached, mem int64
		for f, err := range d.client.List(ctx, root, sdk.ListOptions{Recursive: true}) {
			if err != nil {
				return err
			}
			if f.GetFolder() {
				continue
			}
			n++
			total += f.GetLength()
			cached += f.GetLength() * int64(f.GetCachedPercent()) / 100
			mem += f.GetLength() * int64(f.GetInMemoryPercent()) / 100
			if f.GetPersistenceState() == api.PersistenceState_PERSISTED {
				persisted++
			}
		}
		pct := func(x int64) string {
			if total == 0 {
				return "-"
			}
			return fmt.Sprintf("%d%%", x*100/total)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d/%d\n", root, n, humanize.Bytes(total), pct(cached), pct(mem), persisted, n)
	}
	return tw.Flush()
}

// verify checks the results a user would: /curated holds every file of
// /raw with the same bytes, in the UFS (persisted) and read through the
// cache.
func (d *demo) verify(ctx context.Context) error {
	paths := make([]string, 0, len(d.sample))
	for p := range d.sample {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var bytesChecked int64
	for i, p := range paths {
		rel := strings.TrimPrefix(p, "/raw/")
		want, err := os.ReadFile(filepath.Join(d.ufs, "raw", rel))
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(d.ufs, "curated", rel))
		if err != nil {
			return fmt.Errorf("verify: /curated/%s is not in the UFS after persist: %w", rel, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("verify: UFS copy of /curated/%s differs from /raw/%s", rel, rel)
		}
		// Every tenth file is also read back through the cluster.
		if i%10 == 0 {
			r, err := d.client.Open(ctx, "/curated/"+rel, sdk.OpenOptions{})
			if err != nil {
				return fmt.Errorf("verify: open /curated/%s: %w", rel, err)
			}
			b, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				return fmt.Errorf("verify: read /curated/%s: %w", rel, err)
			}
			if !bytes.Equal(b, want) {
				return fmt.Errorf("verify: /curated/%s read through Alluvium differs from /raw/%s", rel, rel)
			}
			bytesChecked += int64(len(b))
		}
	}
	got, err := os.ReadFile(filepath.Join(d.ufs, "curated", indexName))
	if err != nil {
		return fmt.Errorf("verify: /curated/%s is not in the UFS after persist: %w", indexName, err)
	}
	if !bytes.Equal(got, d.index) || bytes.Count(got, []byte("\n")) != len(paths) {
		return fmt.Errorf("verify: the persisted /curated/%s differs from what the index step wrote", indexName)
	}
	fmt.Fprintln(d.out)
	d.logf("verified: /curated/%s persisted; all %d files of /curated match /raw byte for byte in the UFS; %s read back through the cache", indexName, len(paths), humanize.Bytes(bytesChecked))
	return nil
}
