// Command benchreport runs the benchmarks in tests/bench and writes their
// custom metrics, as medians over -count runs, to docs/BENCHMARKS.md.
//
//	go run ./tests/bench/cmd/benchreport [-count 3] [-bench regexp] [-out docs/BENCHMARKS.md]
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
	flag.Parse()

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
		write(*out, results, notes, *count, when)
		return
	}

	args := []string{"test", "-run", "^$", "-bench", *bench, "-benchtime", "1x",
		"-count", strconv.Itoa(*count), "-timeout", timeout.String(), "./tests/bench/"}
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
	write(*out, results, notes, *count, time.Now())
}

func write(out string, results []*result, notes []string, count int, when time.Time) {
	if len(results) == 0 {
		fatal(fmt.Errorf("no benchmark results"))
	}
	text := render(results, notes, count, when)
	if old, err := os.ReadFile(out); err == nil {
		text += kept(string(old))
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "benchreport: wrote %s\n", out)
	if len(missingRefs) > 0 {
		// Every figure stands beside its reference, measured in the same
		// run: a benchmark that names none is not done.
		fatal(fmt.Errorf("%d row(s) name no reference (tests/bench: reference(b, metric, ...)): %s", len(missingRefs), strings.Join(missingRefs, ", ")))
	}
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
	{"BlockRead", "ratio-stream/cat", true, 0.8, "cached block streamed through the worker vs cat"},
	{"JobMasterTasks/default", "tasks/s", true, 20000, "trivial tasks through one job master"},
	{"Load1GiB64Files", "ratio-load/cp", false, 1.1, "load job vs cp -r, 1 GiB in 64 files"},
	{"Load20000SmallFiles", "ratio-load/cp", false, 1.5, "load job vs cp -r, 20,000 files of 4 KiB"},
	{"Copy1GiB64Files", "ratio-copy/rclone", false, 0.8, "copy job vs rclone copy, 1 GiB in 64 files"},
	{"Copy10000SmallFiles", "ratio-copy/rclone", false, 0.8, "copy job vs rclone copy, 10,000 files of 16 KiB"},
	{"S3Get", "ratio-s3get/sdk", true, 0.8, "S3 GET through the gateway vs the Go SDK"},
	{"S3Put", "ratio-put/minio", true, 1.0, "small PUTs/s through the gateway vs MinIO"},
	{"LocalReady", "ready-s", false, 1.0, "alluvium local (2 workers), exec to ready"},
}

// renderGoals is the table of the goals whose metric was measured.
func renderGoals(b *strings.Builder, results []*result) {
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
	fmt.Fprintf(b, "## Goals\n\n| what | metric | goal | median | |\n|---|---|---|---:|---|\n%s\n\n## All figures\n\n", strings.Join(rows, "\n"))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}

// refs maps "<bench>\x00<metric>" (metric "*": the bench's default) to
// the reference that metric is measured against, as the benchmarks log it.
var refs = map[string]string{}

// referenceOf is what metric of bench is measured against ("" when the
// benchmark names none).
func referenceOf(bench, metric string) string {
	if r, ok := refs[bench+"\x00"+metric]; ok {
		return r
	}
	return refs[bench+"\x00*"]
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
	renderGoals(&b, results)
	fmt.Fprintf(&b, "| benchmark | metric | median | runs | measured against (what both sides do: the notes) |\n|---|---|---:|---|---|\n")
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
			fmt.Fprintf(&b, "| %s | %s | **%s** | %s | %s |\n", name, m, format(median(vals)), strings.Join(runs, ", "), ref)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, "\nNotes from the runs:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}
