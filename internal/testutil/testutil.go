// Package testutil starts real Alluvium processes (and MinIO) for tests:
// it builds the binary once, hands out port ranges that concurrent test
// binaries never share, and captures each process's log, printing it when
// the test fails. Cluster (cluster.go) runs a whole cluster of them for
// the end-to-end suites.
//
// Every process Start launches is supervised: the test fails if the
// process exits on its own, or if its log shows a data race, a Go panic or
// fatal error, or a panic a server recovered (LogProblems); Run fails the
// test on the same signs in a CLI's output, whatever its exit code. So a
// test that ends a process on purpose does it through the Process —
// Kill (SIGKILL to its group), Stop (SIGTERM, then kill), Signal with
// SIGTERM/SIGINT/SIGQUIT/SIGKILL, Wait (it must exit by itself) — or calls
// ExpectExit first when something else ends it (a CLI command, a fault it
// must die of). Never syscall.Kill a Process's pid: that exit would be
// reported as a crash. SIGSTOP/SIGCONT through Signal are not exits.
// Processes still running when the test ends are killed without blame.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testutil: go.mod not found above the working directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of the alluvium binary: $ALLUVIUM_BIN when set
// (make test builds it once), else a fresh build of ./cmd/alluvium.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ALLUVIUM_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	root := RepoRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alluvium-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "alluvium")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/alluvium")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// PortBase returns the base of 200 free loopback ports reserved for this
// test binary (an flock on a file under the temp dir keeps concurrent test
// binaries apart). The ranges lie outside the kernel's ephemeral port
// range, so an outgoing connection of any process can never take a port a
// test server is about to listen on.
func PortBase(t testing.TB) int {
	t.Helper()
	base, f := reservePorts()
	if f == nil {
		t.Fatal("testutil: no free port range")
	}
	t.Cleanup(func() { f.Close() })
	return base
}

// reservePorts flocks a free 200-port range and returns its base and the
// open lock file (closing it frees the range); nil when none is free.
func reservePorts() (int, *os.File) {
	lockDir := filepath.Join(os.TempDir(), "alluvium-test-ports")
	_ = os.MkdirAll(lockDir, 0o777)
	bases := portBases()
	for attempt := 0; attempt < 200; attempt++ {
		base := bases[rand.IntN(len(bases))]
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprint(base)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		if !portsFree(base, 200) {
			f.Close()
			continue
		}
		return base, f
	}
	return 0, nil
}

// singlePorts hands out FreePort's ports from ranges this test binary
// holds until it exits.
var singlePorts struct {
	sync.Mutex
	next, end int
}

// FreePort returns a loopback port nothing listens on, from a range
// reserved as PortBase's are: outside the ephemeral range, so unlike a
// port the kernel picked for ":0" and released, no outgoing connection can
// take it before the test's server binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	singlePorts.Lock()
	defer singlePorts.Unlock()
	for {
		if singlePorts.next == singlePorts.end {
			base, f := reservePorts()
			if f == nil {
				t.Fatal("testutil: no free port range")
			}
			_ = f // held (and the range with it) until the test binary exits
			singlePorts.next, singlePorts.end = base, base+200
		}
		p := singlePorts.next
		singlePorts.next++
		if portsFree(p, 1) {
			return p
		}
	}
}

// portBases lists the 200-port ranges in [20000, 65536) that do not meet
// the ephemeral port range (Linux: net.ipv4.ip_local_port_range).
func portBases() []int {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var l, h int
		if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 && l <= h {
			lo, hi = l, h
		}
	}
	var out []int
	for b := 20000; b+200 <= 65536; b += 200 {
		if b+200 <= lo || b > hi {
			out = append(out, b)
		}
	}
	if len(out) < 16 { // an ephemeral range over nearly everything
		out = out[:0]
		for b := 20000; b < 60000; b += 200 {
			out = append(out, b)
		}
	}
	return out
}

func portsFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Process is a started child process whose output goes to a log file.
//
// Start supervises it (Contract 3 of the test harness): the test fails
// when the process exits on its own — an exit the test did not ask for
// through Kill, Stop, Signal, Wait or ExpectExit — or when its log holds a
// sign of a bug (LogProblems: a data race, a Go panic or fatal error, a
// panic a server recovered). The check of the exit runs the moment the
// process ends (so the failure names it first, not a later timeout it
// caused); the log is scanned once the process is gone, at cleanup. When
// the test ends every process still running is killed: that is expected.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	t       testing.TB
	group   *procGroup
	done    chan struct{}
	err     error

	mu       sync.Mutex
	expected bool // an exit now is the test's doing
}

// procGroup is the processes one test started: the first of their cleanups
// marks them all expected to exit, so a process that dies in the moment
// another is killed at cleanup (a worker losing its master) is no failure.
type procGroup struct {
	mu    sync.Mutex
	procs []*Process
	ended bool
}

var groups sync.Map // testing.TB -> *procGroup

func groupOf(t testing.TB) *procGroup {
	g, _ := groups.LoadOrStore(t, &procGroup{})
	return g.(*procGroup)
}

func (g *procGroup) add(p *Process) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.procs = append(g.procs, p)
	if g.ended {
		p.ExpectExit()
	}
}

// end marks every process of the group expected to exit (the test is over).
func (g *procGroup) end(t testing.TB) {
	g.mu.Lock()
	if g.ended {
		g.mu.Unlock()
		return
	}
	g.ended = true
	procs := append([]*Process(nil), g.procs...)
	g.mu.Unlock()
	groups.Delete(t)
	for _, p := range procs {
		p.ExpectExit()
	}
}

// Start runs bin with args and env (added to the current environment),
// supervised as Process describes. The process is killed when the test
// ends; its log is printed if the test failed.
func Start(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	logDir := LogDir()
	_ = os.MkdirAll(logDir, 0o777)
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%s-%d.log", sanitize(t.Name()), name, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), raceEnv(withToken(env))...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, t: t, group: groupOf(t), done: make(chan struct{})}
	p.group.add(p)
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		// Before done is closed: the cleanup waits for done, so this never
		// reports after the test has completed.
		if !p.exitExpected() {
			t.Errorf("testutil: %s exited on its own (%s); a test that ends a process does it through Kill, Stop, Signal, Wait or ExpectExit%s",
				name, exitString(p.err), problemsSuffix(LogProblems(p.Log())))
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.group.end(t)
		p.Kill()
		RemoveMemTiers(homeArg(args))
		if probs := LogProblems(p.Log()); len(probs) > 0 {
			t.Errorf("testutil: the log of %s (%s) shows a bug:\n%s", name, logPath, strings.Join(probs, "\n"))
		}
		if t.Failed() {
			t.Logf("---- log of %s (%s) ----\n%s", name, logPath, tail(p.Log(), 200))
		}
	})
	return p
}

// LogDir is where Start puts the processes' logs: $ALLUVIUM_TEST_LOGS
// when set (CI keeps it as an artifact), else alluvium-test-logs in the
// temp dir.
func LogDir() string {
	if d := os.Getenv("ALLUVIUM_TEST_LOGS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "alluvium-test-logs")
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func problemsSuffix(probs []string) string {
	if len(probs) == 0 {
		return ""
	}
	return "; its log shows:\n" + strings.Join(probs, "\n")
}

// logProblemMarkers are the signs of a bug in a process's output. A data
// race report (the race detector; GORACE halt_on_error makes it exit 66
// too), a Go panic or runtime fatal error (each at the start of a line),
// and the panics the servers recover and log rather than die of
// (internal/rpc's handler guard, the job worker's task guard).
var logProblemMarkers = []struct {
	text      string
	lineStart bool
}{
	{"WARNING: DATA RACE", false},
	{"panic: ", true},
	{"fatal error: ", true},
	{"panic in rpc handler", false},
	{"task panicked", false},
}

// LogProblems returns the lines of log that show a bug (a data race, a
// panic, a runtime fatal error, a recovered panic), each with its line
// number; at most 10.
func LogProblems(log string) []string {
	var out []string
	for i, line := range strings.Split(log, "\n") {
		for _, m := range logProblemMarkers {
			hit := strings.Contains(line, m.text)
			if m.lineStart {
				hit = strings.HasPrefix(line, m.text)
			}
			if hit {
				out = append(out, fmt.Sprintf("  line %d: %s", i+1, truncateLine(line, 300)))
				break
			}
		}
		if len(out) == 10 {
			break
		}
	}
	return out
}

func truncateLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sanitize(s string) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(s)
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExpectExit tells the supervisor that the process may now exit without
// failing the test: call it before doing what ends the process other than
// through Kill, Stop, Signal or Wait (a CLI command that shuts it down, a
// fault it must die of). Its log is still checked.
func (p *Process) ExpectExit() {
	p.mu.Lock()
	p.expected = true
	p.mu.Unlock()
}

func (p *Process) exitExpected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.expected
}

// Kill sends SIGKILL to the process group and waits for the exit (an
// expected one).
func (p *Process) Kill() {
	p.ExpectExit()
	if p.Running() {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// Signal sends sig to the process only. A signal that ends a process
// (SIGTERM, SIGINT, SIGQUIT, SIGKILL) makes its exit expected; others
// (SIGSTOP, SIGCONT, SIGHUP, ...) do not.
func (p *Process) Signal(sig syscall.Signal) error {
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL:
		p.ExpectExit()
	}
	return p.Cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
// It returns the process's exit error (nil for status 0).
func (p *Process) Stop(timeout time.Duration) error {
	p.ExpectExit()
	if p.Running() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Errorf("%s did not stop within %s of SIGTERM; killing it", p.Name, timeout)
		p.Kill()
	}
	return p.err
}

// Wait waits for the process to exit by itself, which the test then
// expects (a server that must refuse to start, a command that ends).
func (p *Process) Wait(timeout time.Duration) error {
	p.mu.Lock()
	was := p.expected
	p.expected = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.mu.Lock()
		p.expected = was
		p.mu.Unlock()
		return fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// WaitLog waits until the log contains substr.
func (p *Process) WaitLog(substr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Log(), substr) {
			return
		}
		if !p.Running() {
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.Name, p.err, substr, tail(p.Log(), 60))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("%s did not log %q within %s:\n%s", p.Name, substr, timeout, tail(p.Log(), 60))
}

// Eventually retries f until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// Run runs the binary to completion and returns stdout, stderr and the exit
// code. Output showing a bug (LogProblems: a data race, a panic) fails the
// test whatever the exit code.
func Run(t testing.TB, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), raceEnv(withToken(env))...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if probs := LogProblems(o.String() + "\n" + e.String()); len(probs) > 0 {
		t.Errorf("testutil: alluvium %s shows a bug:\n%s\n---- stderr ----\n%s", strings.Join(args, " "), strings.Join(probs, "\n"), tail(e.String(), 100))
	}
	code = 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("run %s %v: %v", bin, args, err)
		}
	}
	return o.String(), e.String(), code
}

var (
	tokenOnce sync.Once
	token     string
)

// ClusterToken is the cluster token of every process Start and Run launch
// (as ALLUVIUM_TOKEN) unless their env names one: processes of a test with
// separate homes then share it, as a real cluster's do. Clients in the test
// pass it (sdk.WithToken, rpc.ClientOptions.Token, Authorization: Bearer).
// An env with "ALLUVIUM_TOKEN=" runs a process without a token.
func ClusterToken() string {
	tokenOnce.Do(func() {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(rand.IntN(256))
		}
		token = fmt.Sprintf("test-%x", b)
	})
	return token
}

func withToken(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "ALLUVIUM_TOKEN=") {
			return env
		}
	}
	return append(append([]string(nil), env...), "ALLUVIUM_TOKEN="+ClusterToken())
}

// raceEnv stops a race-enabled binary from sleeping a second at every exit
// (the CLI runs many short processes), unless the caller set GORACE.
func raceEnv(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "GORACE=") {
			return env
		}
	}
	if os.Getenv("GORACE") != "" {
		return env
	}
	return append(append([]string(nil), env...), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
}

// HTTPGet is http.Get with the ClusterToken as bearer token (a role's
// /metrics and JSON APIs need it; /healthz does not).
func HTTPGet(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+ClusterToken())
	return http.DefaultClient.Do(req)
}
