// Command benchreport runs the benchmarks in tests/bench and writes their
// custom metrics, as medians over -count runs, to docs/BENCHMARKS.md.
//
//	go run ./tests/bench/cmd/benchreport [-count 3] [-bench regexp] [-out docs/BENCHMARKS.md]
//
// With -section NAME it writes only that section of the file (the scale
// run, `make bench-scale`: -pkg ./tests/scale/ -section scale; any other
// name: a partial run of -bench, beside the full run's table, not in its
// place), marked to be kept, and leaves the rest as it is; a full run
// keeps every section it finds. -note adds a line to the section (say
// why its figures are preliminary).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	count := flag.Int("count", 3, "runs of each benchmark (the table shows the median)")
	bench := flag.String("bench", ".", "benchmarks to run (go test -bench regexp)")
	out := flag.String("out", "docs/BENCHMARKS.md", "markdown file to write")
	timeout := flag.Duration("timeout", 90*time.Minute, "go test -timeout")
	from := flag.String("from", "", "render from this saved `go test -bench` output instead of running (dated by the file's mtime)")
	pkg := flag.String("pkg", "./tests/bench/", "package of the benchmarks")
	section := flag.String("section", "", "write only this marked section of -out (scale: the scale run; another name: a partial run of -bench)")
	note := flag.String("note", "", "a line the section carries (e.g. why its figures are preliminary)")
	flag.Parse()
	dst := &output{path: *out, section: *section, note: *note, pkg: *pkg, bench: *bench}

	if *from != "" {
		f, err := os.Open(*from)
		if err != nil {
			fatal(err)
		}
		results, notes := parse(f)
		when := time.Now()
		if fi, err := f.Stat(); err == nil {
			when = fi.ModTime()
		}
		f.Close()
		dst.write(results, notes, *count, when)
		return
	}

	args := []string{"test", "-run", "^$", "-bench", *bench, "-benchtime", "1x",
		"-count", strconv.Itoa(*count), "-timeout", timeout.String(), *pkg}
	fmt.Fprintf(os.Stderr, "benchreport: go %s\n", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatal(err)
	}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	results, notes := parse(io.TeeReader(stdout, os.Stdout))
	if err := cmd.Wait(); err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: go test failed: %v (writing what was measured)\n", err)
	}
	dst.write(results, notes, *count, time.Now())
}

// output is where the report goes: the whole file, or one section of it.
type output struct {
	path, section string
	note          string // a line of the section (-note)
	pkg, bench    string // what was run (a partial run's section says)
}

func (o *output) write(results []*result, notes []string, count int, when time.Time) {
	if len(results) == 0 {
		fatal(fmt.Errorf("no benchmark results"))
	}
	old, _ := os.ReadFile(o.path)
	var text string
	if o.section == "" {
		text = render(results, notes, count, when) + kept(string(old))
	} else {
		text = replaceSection(string(old), o.renderSection(results, notes, count, when))
	}
	if err := os.WriteFile(o.path, []byte(text), 0o644); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "benchreport: wrote %s\n", o.path)
	if len(missingRefs) > 0 {
		// Every figure stands beside its reference, measured in the same
		// run: a benchmark that names none is not done.
		fatal(fmt.Errorf("%d row(s) name no reference (tests/bench: reference(b, metric, ...)): %s", len(missingRefs), strings.Join(missingRefs, ", ")))
	}
}

// replaceSection puts sec (a "## " heading, the keep marker, its body) in
// place of the section of old with the same heading, or after everything.
func replaceSection(old, sec string) string {
	heading := sec[:strings.IndexByte(sec, '\n')]
	lines := strings.Split(strings.TrimRight(old, "\n"), "\n")
	for i, l := range lines {
		if l != heading {
			continue
		}
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "## ") {
			j++
		}
		rest := ""
		if j < len(lines) {
			rest = "\n" + strings.Join(lines[j:], "\n") + "\n"
		}
		return strings.Join(lines[:i], "\n") + "\n" + strings.TrimRight(sec, "\n") + "\n" + rest
	}
	return strings.TrimRight(old, "\n") + "\n\n" + strings.TrimRight(sec, "\n") + "\n"
}

// missingRefs are the rows render found without a reference.
var missingRefs []string

// keepMarker, on the line after a section's "## " heading, marks figures
// measured elsewhere than tests/bench (the web console's, in the browser
// test): benchreport carries such sections over when it rewrites the file.
const keepMarker = "<!-- kept by benchreport -->"

// kept returns the marked sections of an existing report, verbatim, each
// after a blank line.
func kept(old string) string {
	var b strings.Builder
	lines := strings.Split(strings.TrimRight(old, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "## ") || i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != keepMarker {
			continue
		}
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "## ") {
			j++
		}
		b.WriteString("\n" + strings.TrimRight(strings.Join(lines[i:j], "\n"), "\n") + "\n")
		i = j - 1
	}
	return b.String()
}

// goal is a target the issues set for one metric's median.
type goal struct {
	bench, metric string
	atLeast       bool // else at most
	value         float64
	what          string
}

var goals = []goal{
	{"FSMasterCreate/clients=64", "entries/fsync", true, 30, "journal group commit at 64 clients"},
	{"FSMasterCreate/sdk/clients=64", "creates/s", true, 25000, "journaled creates (create + complete) at 64 clients, through one shared SDK client"},
	{"FSMasterGetStatus/sdk/clients=64", "getstatus/s", true, 80000, "getStatus calls at 64 clients, through one shared SDK client"},
	{"FSMasterLearn", "learn-files/s", true, 150000, "learn a UFS tree (recursive listing of unseen files), in process"},
	{"BlockRead", "ratio-stream/cat", true, 0.8, "cached block streamed through the worker vs cat"},
	{"JobMasterTasks/default", "tasks/s", true, 20000, "trivial tasks through one job master"},
	{"Load1GiB64Files", "ratio-load/cp", false, 1.1, "load job vs cp -r, 1 GiB in 64 files"},
	{"Load20000SmallFiles", "ratio-load/cp", false, 1.2, "load job vs cp -r, 20,000 files of 4 KiB (median of 5 rounds, cp timed between)"},
	{"Copy1GiB64Files", "ratio-copy/rclone-nocheck", false, 0.6, "copy job vs rclone copy --ignore-checksum, 1 GiB in 64 files"},
	{"Copy1GiB64Files", "ratio-checksum/rclone", false, 0.5, "copy job --checksum vs rclone copy (verifies), 1 GiB in 64 files"},
	{"Copy10000SmallFiles", "ratio-copy/rclone-nocheck", false, 0.8, "copy job vs rclone copy --ignore-checksum, 10,000 files of 16 KiB"},
	{"Copy10000SmallFiles", "ratio-checksum/rclone", false, 0.8, "copy job --checksum vs rclone copy (verifies), 10,000 files of 16 KiB"},
	{"CopyAgain10000SmallFiles", "ratio-copy/rclone", false, 0.5, "second copy, nothing changed, vs rclone copy, 10,000 files of 16 KiB"},
	{"S3Get", "ratio-s3get/sdk", true, 0.8, "S3 GET through the gateway vs the Go SDK"},
	{"S3Put", "ratio-put/minio", true, 1.0, "small PUTs/s through the gateway vs MinIO"},
	{"S3Upload512MiB", "ratio-cp/minio", false, 1.0, "aws s3 cp of 512 MiB (multipart) to the gateway vs MinIO"},
	{"LocalReady", "ready-s", false, 1.0, "alluvium local (2 workers), exec to ready"},
	{"FSMasterFailover", "failover-s", false, 2.0, "kill -9 of the leading FS master to the next acknowledged create"},
	{"FSMasterEmbeddedCreate", "ratio-embedded/single", true, 0.5, "creates/s at 64 clients: 3 FS masters (embedded journal) vs 1 (local)"},
	{"PluginOverhead", "ratio-plugin/builtin", false, 1.2, "a plan plugin vs the same plan built in (noop, 20,000 files of 4 KiB)"},
	{"TinyJobs", "p50-ms", false, 15, "tiny load job (one 4 KiB file), submit to watched COMPLETED, p50"},
	{"TinyJobs", "p99-ms", false, 50, "tiny load job, p99"},
	{"TinyJobs", "jobs/s-64", true, 3000, "tiny load jobs/s with 64 submitters"},
	{"PipelineOverhead", "overhead-ms-per-step", false, 10, "pipeline overhead per step (4 tiny jobs)"},
	{"WorkerCutMidLoad", "cut-extra-s", false, 12, "worker cut mid-load: cut to completion minus undisturbed (timeout 10 s + 2 s)"},
	{"CopyBandwidth", "rate/limit", false, 1.1, "copy with --bandwidth 50MiB: rate over the limit (and >= 0.9)"},
	{"EventToJob", "p50-ms", false, 100, "event policy (--debounce 0): file completed to its persist job running"},
}

// scaleGoals are issue 20's goals for the scale run (tests/scale).
var scaleGoals = []goal{
	{"Scale", "learn-files/s", true, 150000, "learn a UFS tree (fs ls -R), files/s from cold inodes (find of the tree: find-files/s)"},
	{"Scale", "warm-learn-files/s", true, 150000, "learn a UFS tree (fs ls -R), files/s, its inodes warm (a stat-ing find of it: warm-find-stat-files/s)"},
	{"Scale", "fsmaster-heap-B/inode", false, 200, "FS master heap per inode after learning"},
	{"Scale", "restart-s", false, 15, "FS master restart (checkpoint + tail), kill -9 to serving"},
	{"Scale", "load-cached-s", false, 60, "load job over every file, cached: plan + verify"},
	{"Scale", "load-cached-rss-growth-MiB", false, 1024, "job master + FS master RSS growth during that load"},
	{"Scale", "hb-fsmaster-cpu-cores", false, 1, "FS master CPU with every worker heartbeating at 1 Hz"},
	{"Scale", "hb-jobmaster-cpu-cores", false, 1, "job master CPU with every job worker polling at 1 Hz"},
	{"Scale", "hb-fsmaster-p99-ms", false, 50, "block worker heartbeat p99 latency"},
	{"Scale", "hb-jobmaster-poll-overrun-p99-ms", false, 50, "job worker long poll p99 time past its wait"},
	{"Scale", "leader-restart-all-live-s", false, 30, "both leaders killed and restarted: every worker LIVE again"},
	{"ScaleInodes", "fsmaster-heap-B/inode", false, 200, "FS master heap per inode, generated namespace"},
	{"ScaleInodes", "restart-s", false, 15, "FS master restart (checkpoint + tail), kill -9 to serving"},
	{"ScaleInodes", "load-cached-s", false, 60, "load job over every file, cached (empty): plan + verify"},
	{"ScaleInodes", "load-cached-rss-growth-MiB", false, 1024, "job master + FS master RSS growth during that load"},
}

// renderGoals is the table of the goals whose metric was measured.
func renderGoals(b *strings.Builder, results []*result, goals []goal, h string) {
	byName := map[string]*result{}
	for _, r := range results {
		byName[strings.TrimPrefix(r.name, "Benchmark")] = r
	}
	var rows []string
	for _, g := range goals {
		r := byName[g.bench]
		if r == nil || len(r.values[g.metric]) == 0 {
			continue
		}
		m := median(r.values[g.metric])
		op, met := "≤", m <= g.value
		if g.atLeast {
			op, met = "≥", m >= g.value
		}
		verdict := "met"
		if !met {
			verdict = "**not met**"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s %s | %s %s | %s | %s |", g.what, g.bench, g.metric, op, format(g.value), format(m), verdict))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "%s Goals\n\n| what | metric | goal | median | |\n|---|---|---|---:|---|\n%s\n\n%s All figures\n\n", h, strings.Join(rows, "\n"), h)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}

// refs maps "<bench>\x00<metric>" (metric "*": the bench's default) to
// the reference that metric is measured against, as the benchmarks log it.
var refs = map[string]string{}

// referenceOf is what metric of bench is measured against ("" when the
// benchmark names none): the metric's own, else that of the longest
// pattern "prefix*" it matches, else the bench's default ("*"). Patterns
// keep a benchmark's REF lines few: go test keeps only the first ten lines
// a benchmark logs.
func referenceOf(bench, metric string) string {
	if r, ok := refs[bench+"\x00"+metric]; ok {
		return r
	}
	best, ref := -1, ""
	for k, r := range refs {
		b, pat, ok := strings.Cut(k, "\x00")
		if !ok || b != bench || !strings.HasSuffix(pat, "*") {
			continue
		}
		if pre := strings.TrimSuffix(pat, "*"); strings.HasPrefix(metric, pre) && len(pre) > best {
			best, ref = len(pre), r
		}
	}
	return ref
}

// result is one benchmark's metric values over the runs, in first-seen order.
type result struct {
	name    string
	metrics []string
	values  map[string][]float64
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse reads `go test -bench` output. Lines "NOTE: <bench>: text" that a
// benchmark logs with b.Logf("NOTE: ...") are kept as footnotes; lines
// "REF: <bench>: <metric>: reference" (tests/bench's reference helper)
// name what a metric is measured against ("*": every metric of the bench
// without one of its own).
func parse(r io.Reader) ([]*result, []string) {
	var order []*result
	byName := map[string]*result{}
	var notes []string
	seenNote := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "REF: "); i >= 0 {
			parts := strings.SplitN(strings.TrimSpace(line[i+len("REF: "):]), ": ", 3)
			if len(parts) == 3 {
				refs[parts[0]+"\x00"+parts[1]] = parts[2]
			}
			continue
		}
		if i := strings.Index(line, "NOTE: "); i >= 0 {
			n := strings.TrimSpace(line[i+len("NOTE: "):])
			if !seenNote[n] {
				seenNote[n] = true
				notes = append(notes, n)
			}
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		res := byName[name]
		if res == nil {
			res = &result{name: name, values: map[string][]float64{}}
			byName[name] = res
			order = append(order, res)
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if unit == "ns/op" || unit == "B/op" || unit == "allocs/op" {
				continue
			}
			if _, ok := res.values[unit]; !ok {
				res.metrics = append(res.metrics, unit)
			}
			res.values[unit] = append(res.values[unit], v)
		}
	}
	return order, notes
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch a := v; {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func render(results []*result, notes []string, count int, when time.Time) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (tests/bench/cmd/benchreport) on %s: %s, %d CPUs, %s/%s, %s.\n",
		when.UTC().Format("2006-01-02 15:04 UTC"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "Each figure is the median of %d runs; every benchmark measures its reference in the same run,\n", count)
	fmt.Fprintf(&b, "each row names it, and the notes say what both sides do (verify, fsync, durability), so a ratio\n")
	fmt.Fprintf(&b, "is read knowing where the two differ. Re-run with `make bench` (or `go run ./tests/bench/cmd/benchreport -bench Name`).\n\n")
	renderGoals(&b, results, goals, "##")
	renderTable(&b, results, notes)
	return b.String()
}

// renderSection is the section of one of the runs measured apart from a
// full `make bench`: the scale run (tests/scale, section "scale"), or a
// partial run of some benchmarks (any other name) that must not replace
// the full run's table. It carries the keep marker, so a full `make bench`
// keeps it.
func (o *output) renderSection(results []*result, notes []string, count int, when time.Time) string {
	var b strings.Builder
	host, _ := os.Hostname()
	machine := fmt.Sprintf("%s: %s, %d CPUs, %s/%s, %s", when.UTC().Format("2006-01-02 15:04 UTC"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	// A partial run may be of tests/scale's benchmarks too (ScaleInodes,
	// ScaleWorkers): only the goals of what was measured are shown.
	gs := append(append([]goal(nil), goals...), scaleGoals...)
	if o.section == "scale" {
		fmt.Fprintf(&b, "## Scale (`make bench-scale`)\n%s\n\n", keepMarker)
		fmt.Fprintf(&b, "Written by `make bench-scale` (tests/scale, benchreport -section %s) on %s;\n", o.section, machine)
		fmt.Fprintf(&b, "%d run(s). CPU profiles of the masters in each phase and their heap after learning are kept in\n", count)
		fmt.Fprintf(&b, "docs/profiles/scale/ (`go tool pprof bin/alluvium docs/profiles/scale/<phase>.pprof`).\n\n")
		gs = scaleGoals
	} else {
		fmt.Fprintf(&b, "## Partial run: %s\n%s\n\n", o.section, keepMarker)
		fmt.Fprintf(&b, "Written by `benchreport -pkg %s -bench '%s' -section %s` on %s;\n", o.pkg, o.bench, o.section, machine)
		fmt.Fprintf(&b, "only these benchmarks, the median of %d run(s) each, each beside its reference in the same run.\n\n", count)
	}
	if o.note != "" {
		fmt.Fprintf(&b, "%s\n\n", o.note)
	}
	renderGoals(&b, results, gs, "###")
	renderTable(&b, results, notes)
	return b.String()
}

func renderTable(b *strings.Builder, results []*result, notes []string) {
	fmt.Fprintf(b, "| benchmark | metric | median | runs | measured against (what both sides do: the notes) |\n|---|---|---:|---|---|\n")
	for _, r := range results {
		name := strings.TrimPrefix(r.name, "Benchmark")
		for _, m := range r.metrics {
			vals := r.values[m]
			runs := make([]string, len(vals))
			for i, v := range vals {
				runs[i] = format(v)
			}
			ref := referenceOf(name, m)
			if ref == "" {
				ref = "**none named**"
				missingRefs = append(missingRefs, name+" "+m)
			}
			fmt.Fprintf(b, "| %s | %s | **%s** | %s | %s |\n", name, m, format(median(vals)), strings.Join(runs, ", "), ref)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(b, "\nNotes from the runs:\n\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
}
