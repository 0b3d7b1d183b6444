package testutil

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeT records what the supervisor reports instead of failing the real
// test, and runs its cleanups when told (as the end of a test would).
type fakeT struct {
	testing.TB // the real test: Name, TempDir, Helper, Fatal
	mu         sync.Mutex
	errors     []string
	cleanups   []func()
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) Logf(string, ...any) {}

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errors) > 0
}

func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// end runs the cleanups, last registered first, and returns the errors.
func (f *fakeT) end() []string {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errors
}

// waitFor is a shell loop that returns once path exists: the test, not a
// guess, decides when the script goes on.
func waitFor(path string) string {
	return fmt.Sprintf("while [ ! -e %q ]; do sleep 0.02; done", path)
}

func sh(t *fakeT, name, script string) *Process {
	return Start(t, name, "/bin/sh", nil, "-c", script)
}

func TestSupervisorFailsAnUnexpectedExit(t *testing.T) {
	f := &fakeT{TB: t}
	p := sh(f, "crasher", "echo starting; exit 3")
	<-p.done // the exit is reported as it happens, before the cleanup
	if errs := f.errors; len(errs) != 1 || !strings.Contains(errs[0], "crasher exited on its own (exit status 3)") {
		t.Fatalf("errors after an unexpected exit = %q", errs)
	}
	if errs := f.end(); len(errs) != 1 {
		t.Fatalf("errors at the end = %q, want the one exit", errs)
	}
}

func TestSupervisorFindsRacesAndPanics(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"race", "echo '=================='; echo 'WARNING: DATA RACE'; echo 'Write at 0x1 by goroutine 7:'; exec sleep 60", "WARNING: DATA RACE"},
		{"panic", "echo 'panic: runtime error: index out of range [3] with length 3'; echo; echo 'goroutine 1 [running]:'; exec sleep 60", "panic: runtime error"},
		{"fatal", "echo 'fatal error: concurrent map writes'; exec sleep 60", "fatal error: concurrent map writes"},
		{"recovered", `echo '12:00:00.000	ERROR	fsmaster	rpc/rpc.go:153	panic in rpc handler	{"method": "/x"}'; exec sleep 60`, "panic in rpc handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeT{TB: t}
			p := sh(f, tc.name, tc.script)
			Eventually(t, 10*time.Second, func() error {
				if !strings.Contains(p.Log(), tc.want) {
					return fmt.Errorf("log %q", p.Log())
				}
				return nil
			})
			errs := f.end() // killed at the end: expected; the log is not
			if len(errs) != 1 || !strings.Contains(errs[0], "shows a bug") || !strings.Contains(errs[0], tc.want) {
				t.Fatalf("errors = %q, want one naming %q", errs, tc.want)
			}
		})
	}
}

func TestSupervisorAcceptsExitsTheTestCaused(t *testing.T) {
	f := &fakeT{TB: t}
	killed := sh(f, "killed", "exec sleep 60")
	stopped := sh(f, "stopped", "exec sleep 60")
	signalled := sh(f, "signalled", "exec sleep 60")
	waited := sh(f, "waited", "sleep 0.2; exit 1")
	gate := filepath.Join(t.TempDir(), "gate")
	announced := sh(f, "announced", waitFor(gate)+"; exit 4")
	announced.ExpectExit()
	bystander := sh(f, "bystander", "exec sleep 60") // still running at the end
	// The log mentions panics in words the markers must not take for one.
	quiet := sh(f, "quiet", `echo 'INFO	job	{"panic": "none"}'; echo 'a line about a panic: not at the start'; exec sleep 60`)

	killed.Kill()
	if err := stopped.Stop(10 * time.Second); err == nil {
		t.Error("Stop of sleep: no error, want signal: terminated")
	}
	if err := signalled.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-signalled.done
	if err := waited.Wait(10 * time.Second); err == nil {
		t.Error("Wait: no error, want exit status 1")
	}
	WriteFile(t, gate, nil) // now it ends, as the test announced
	<-announced.done
	// SIGSTOP/SIGCONT do not end a process, so they announce nothing.
	if err := bystander.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := bystander.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if !bystander.Running() || bystander.exitExpected() {
		t.Fatal("SIGSTOP/SIGCONT made the exit expected")
	}
	_ = quiet
	if errs := f.end(); len(errs) != 0 {
		t.Fatalf("errors = %q, want none", errs)
	}
}

// A Wait that times out leaves the process supervised: dying later is
// still its own doing.
func TestSupervisorWaitTimeoutKeepsWatching(t *testing.T) {
	f := &fakeT{TB: t}
	gate := filepath.Join(t.TempDir(), "gate")
	p := sh(f, "late", waitFor(gate)+"; exit 5")
	if err := p.Wait(10 * time.Millisecond); err == nil {
		t.Fatal("Wait returned nil while the process runs")
	}
	WriteFile(t, gate, nil)
	<-p.done
	if errs := f.end(); len(errs) != 1 || !strings.Contains(errs[0], "late exited on its own (exit status 5)") {
		t.Fatalf("errors = %q", errs)
	}
}

func TestLogProblems(t *testing.T) {
	log := "ok\nWARNING: DATA RACE\nx\n  panic: indented is a message\npanic: boom\n"
	got := LogProblems(log)
	if len(got) != 2 || !strings.Contains(got[0], "line 2") || !strings.Contains(got[1], "line 5: panic: boom") {
		t.Fatalf("LogProblems = %q", got)
	}
}
