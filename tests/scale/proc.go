package scale

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// cpuTime is the CPU time (user + system) process pid has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / userHZ
}

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on Linux.
const userHZ = 100

// loadAvg is the machine's one-minute load average (how busy the shared
// machine was: a figure is judged beside it).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// rss is process pid's resident set size in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// rssPeak samples the summed RSS of pids every 100 ms until stopped and
// returns the highest sum seen.
type rssPeak struct {
	stop chan struct{}
	done chan int64
}

func watchRSS(pids ...int) *rssPeak {
	p := &rssPeak{stop: make(chan struct{}), done: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			var sum int64
			for _, pid := range pids {
				sum += rss(pid)
			}
			peak = max(peak, sum)
			select {
			case <-p.stop:
				p.done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *rssPeak) end() int64 {
	close(p.stop)
	return <-p.done
}

// get fetches an http URL of a master with the cluster token.
func get(url string, timeout time.Duration) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testutil.ClusterToken())
	c := &http.Client{Timeout: timeout}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// metric reads one unlabelled metric from a /metrics page.
func metric(page []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// profiler takes pprof profiles of the masters into dir (nothing when dir
// is empty).
type profiler struct {
	dir string
	wg  sync.WaitGroup
	mu  sync.Mutex
	err []string
}

// cpu starts a CPU profile of the process serving httpAddr for d, saved as
// name.
func (p *profiler) cpu(httpAddr, name string, d time.Duration) { p.take(httpAddr, "profile", name, d) }

// take starts a profile of kind (profile: CPU; mutex, block: contention)
// of the process serving httpAddr over d, saved as name.
func (p *profiler) take(httpAddr, kind, name string, d time.Duration) {
	if p.dir == "" {
		return
	}
	secs := max(int(d/time.Second), 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.save(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", httpAddr, kind, secs), name, time.Duration(secs+60)*time.Second)
	}()
}

// heap saves a heap profile (after a GC) of the process serving httpAddr.
func (p *profiler) heap(httpAddr, name string) {
	if p.dir == "" {
		return
	}
	p.save(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", httpAddr), name, 5*time.Minute)
}

func (p *profiler) save(url, name string, timeout time.Duration) {
	b, err := get(url, timeout)
	if err == nil {
		err = os.WriteFile(filepath.Join(p.dir, name), b, 0o644)
	}
	if err != nil {
		p.mu.Lock()
		p.err = append(p.err, fmt.Sprintf("%s: %v", name, err))
		p.mu.Unlock()
	}
}

// self starts a CPU profile of this process (the simulator) saved as name;
// the returned stop ends it early (it ends by itself after d). Nothing
// when dir is empty or a profile of this process is already running
// (go test -cpuprofile).
func (p *profiler) self(name string, d time.Duration) (stop func()) {
	if p.dir == "" {
		return func() {}
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		p.note(name, err)
		return func() {}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			p.note(name, os.WriteFile(filepath.Join(p.dir, name), buf.Bytes(), 0o644))
		})
	}
	time.AfterFunc(d, stop)
	return stop
}

// selfTrace writes an execution trace of this process over d as name, in
// the background (settle waits for it).
func (p *profiler) selfTrace(name string, d time.Duration) {
	if p.dir == "" {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var buf bytes.Buffer
		if err := trace.Start(&buf); err != nil {
			p.note(name, err)
			return
		}
		time.Sleep(d)
		trace.Stop()
		p.note(name, os.WriteFile(filepath.Join(p.dir, name), buf.Bytes(), 0o644))
	}()
}

func (p *profiler) note(name string, err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	p.err = append(p.err, fmt.Sprintf("%s: %v", name, err))
	p.mu.Unlock()
}

// settle waits for the profiles under way (a process takes one CPU
// profile at a time).
func (p *profiler) settle() { p.wg.Wait() }

func (p *profiler) wait() []string {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// machineBusy is the CPU time every CPU of the machine spent not idle
// (/proc/stat: all but idle and iowait); 0 when unknown.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// raisePriority gives every thread of this process nice value n (on
// Linux a nice value is a thread's; threads created later and child
// processes inherit it from the thread that creates them, so the masters
// the run starts after this have it too) and returns what restores the
// threads' earlier value. A lower nice than the caller's needs root
// (CAP_SYS_NICE): the run fails without it rather than measure what it
// was not asked to. Why: on the shared 2-core machine the benchmark runs
// on, other tenants' compiles took 0.4–0.9 of a core in stretches of
// seconds, and in runs beside them those seconds held most heartbeats over
// 50 ms (hb3, per-second counts beside /proc/stat); the goal is about
// masters on hosts of their own.
func raisePriority(tb testing.TB, n int) (restore func()) {
	tb.Helper()
	old, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		tb.Fatalf("getpriority: %v", err)
	}
	old = 20 - old // the raw syscall returns 20 - nice
	set := func(v int) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list this process's threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, v); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("nice %d for thread %d: %w", v, tid, err)
			}
		}
		return nil
	}
	if err := set(n); err != nil {
		tb.Fatalf("ALLUVIUM_SCALE_NICE=%d: %v (lowering a nice value needs root)", n, err)
	}
	return func() {
		if err := set(old); err != nil {
			tb.Logf("restore nice %d: %v", old, err)
		}
	}
}
