package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/testutil"
)

// gate is a run func whose calls are held until the test lets each go.
type gate struct {
	mu      sync.Mutex
	calls   [][]int
	started chan int // the call's number (1, 2, ...)
	release chan struct{}
}

func newGate() *gate {
	return &gate{started: make(chan int, 8), release: make(chan struct{})}
}

func (g *gate) run(items []int) int {
	g.mu.Lock()
	g.calls = append(g.calls, slices.Clone(items))
	n := len(g.calls)
	g.mu.Unlock()
	g.started <- n
	<-g.release
	return n
}

// Items added while a call is in flight go together in the next call, which
// starts when that one ends: each caller is answered by a call that started
// after it asked, and the run func sees one call per wave.
func TestCallersOfAWaveShareTheNextCall(t *testing.T) {
	eachGroup(t, testCallersOfAWaveShareTheNextCall)
}

func testCallersOfAWaveShareTheNextCall(t *testing.T, newGroup func(func([]int) int) *coalesce.Group[int, int]) {
	gt := newGate()
	g := newGroup(gt.run)
	ctx := context.Background()
	ask := func(item int) <-chan int {
		out := make(chan int, 1)
		go func() {
			n, ok := g.Do(ctx, item)
			if !ok {
				t.Error("Do: not answered")
			}
			out <- n
		}()
		return out
	}
	first := ask(1)
	if n := <-gt.started; n != 1 {
		t.Fatalf("first call is call %d", n)
	}
	second, third := ask(2), ask(3)
	testutil.Eventually(t, time.Minute, waitingFor(g, 2))
	gt.release <- struct{}{}
	if got := <-first; got != 1 {
		t.Fatalf("first caller answered by call %d", got)
	}
	if n := <-gt.started; n != 2 {
		t.Fatalf("second call is call %d", n)
	}
	gt.release <- struct{}{}
	if a, b := <-second, <-third; a != 2 || b != 2 {
		t.Fatalf("callers who asked during call 1 answered by calls %d and %d, want 2", a, b)
	}
	gt.mu.Lock()
	calls := gt.calls
	gt.mu.Unlock()
	if len(calls) != 2 || !slices.Equal(calls[0], []int{1}) || !slices.Contains(calls[1], 2) || !slices.Contains(calls[1], 3) || len(calls[1]) != 2 {
		t.Fatalf("calls %v, want [[1] [2 3]] (the second in either order)", calls)
	}
	// Idle again: a lone caller starts a call of its own at once.
	last := ask(4)
	if n := <-gt.started; n != 3 {
		t.Fatalf("third call is call %d", n)
	}
	gt.release <- struct{}{}
	if got := <-last; got != 3 {
		t.Fatalf("lone caller answered by call %d", got)
	}
}

// A caller whose context ends stops waiting; its batch goes on for the
// others.
func TestCallerGivesUpOnItsContext(t *testing.T) { eachGroup(t, testCallerGivesUpOnItsContext) }

func testCallerGivesUpOnItsContext(t *testing.T, newGroup func(func([]int) int) *coalesce.Group[int, int]) {
	gt := newGate()
	g := newGroup(gt.run)
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool, 1)
	go func() {
		_, ok := g.Do(cctx, 1)
		done <- ok
	}()
	<-gt.started
	cancel()
	if ok := <-done; ok {
		t.Fatal("cancelled caller answered")
	}
	other := make(chan int, 1)
	go func() {
		n, _ := g.Do(context.Background(), 2)
		other <- n
	}()
	testutil.Eventually(t, time.Minute, waitingFor(g, 1))
	gt.release <- struct{}{}
	<-gt.started
	gt.release <- struct{}{}
	if n := <-other; n != 2 {
		t.Fatalf("other caller answered by call %d", n)
	}
	if err := context.Cause(cctx); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// waitingFor is a condition for testutil.Eventually: n items wait for the
// next batch.
func waitingFor(g *coalesce.Group[int, int], n int) func() error {
	return func() error {
		if w := g.Waiting(); w != n {
			return fmt.Errorf("%d waiting for the next call, want %d", w, n)
		}
		return nil
	}
}

// DoAll puts a caller's items in the next batch together with the items of
// the others who ask meanwhile, and answers it with that batch's answer.
func TestDoAllJoinsTheNextCall(t *testing.T) { eachGroup(t, testDoAllJoinsTheNextCall) }

func testDoAllJoinsTheNextCall(t *testing.T, newGroup func(func([]int) int) *coalesce.Group[int, int]) {
	gt := newGate()
	g := newGroup(gt.run)
	ctx := context.Background()
	first := make(chan int, 1)
	go func() {
		n, _ := g.DoAll(ctx, []int{1, 2})
		first <- n
	}()
	if n := <-gt.started; n != 1 {
		t.Fatalf("first call is call %d", n)
	}
	second := make(chan int, 2)
	go func() {
		n, _ := g.DoAll(ctx, []int{3, 4})
		second <- n
	}()
	go func() {
		n, _ := g.Do(ctx, 5)
		second <- n
	}()
	testutil.Eventually(t, time.Minute, waitingFor(g, 3))
	gt.release <- struct{}{}
	if got := <-first; got != 1 {
		t.Fatalf("first caller answered by call %d", got)
	}
	<-gt.started
	gt.release <- struct{}{}
	if a, b := <-second, <-second; a != 2 || b != 2 {
		t.Fatalf("callers during call 1 answered by calls %d and %d, want 2", a, b)
	}
	gt.mu.Lock()
	calls := gt.calls
	gt.mu.Unlock()
	if len(calls) != 2 || !slices.Equal(calls[0], []int{1, 2}) || len(calls[1]) != 3 || !slices.Contains(calls[1], 3) || !slices.Contains(calls[1], 4) || !slices.Contains(calls[1], 5) {
		t.Fatalf("calls %v, want [[1 2] [3 4 5]] (the second in any order)", calls)
	}
}

// eachGroup runs a test against a plain and a gathering group: gathering
// changes who gets into a batch, never the rules (a lone caller starts one
// at once; the callers who come while one is in flight share the next).
func eachGroup(t *testing.T, test func(*testing.T, func(func([]int) int) *coalesce.Group[int, int])) {
	t.Run("plain", func(t *testing.T) { test(t, coalesce.New[int, int]) })
	t.Run("gathering", func(t *testing.T) { test(t, coalesce.NewGathering[int, int]) })
}

// WithInFlight(2): a caller who comes while one batch is in flight starts
// the second at once; callers who come while two are in flight share the
// next, which starts when either ends.
func TestInFlightLimit(t *testing.T) {
	eachGroup(t, func(t *testing.T, newGroup func(func([]int) int) *coalesce.Group[int, int]) {
		gt := newGate()
		g := newGroup(gt.run).WithInFlight(2)
		ctx := context.Background()
		answers := make(chan [2]int, 4)
		ask := func(item int) {
			go func() {
				n, ok := g.Do(ctx, item)
				if !ok {
					t.Error("Do: not answered")
				}
				answers <- [2]int{item, n}
			}()
		}
		ask(1)
		if n := <-gt.started; n != 1 {
			t.Fatalf("first call is call %d", n)
		}
		ask(2)
		if n := <-gt.started; n != 2 {
			t.Fatalf("second call is call %d", n)
		}
		ask(3)
		ask(4)
		testutil.Eventually(t, time.Minute, waitingFor(g, 2))
		gt.release <- struct{}{} // one of calls 1 and 2 ends
		if n := <-gt.started; n != 3 {
			t.Fatalf("third call is call %d", n)
		}
		gt.release <- struct{}{}
		gt.release <- struct{}{}
		got := map[int]int{}
		for range 4 {
			a := <-answers
			got[a[0]] = a[1]
		}
		if got[1] != 1 || got[2] != 2 || got[3] != 3 || got[4] != 3 {
			t.Fatalf("item → call %v, want 1→1 2→2 3→3 4→3", got)
		}
		gt.mu.Lock()
		calls := gt.calls
		gt.mu.Unlock()
		if len(calls) != 3 || len(calls[2]) != 2 {
			t.Fatalf("calls %v, want [[1] [2] [3 4]] (the last in either order)", calls)
		}
	})
}

// goroutineID is the id of the calling goroutine (the first line of its
// stack: "goroutine 123 [running]:"); ids are never reused.
func goroutineID() string {
	buf := make([]byte, 64)
	return strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1]
}

// A batch runs on a worker of the group's that outlives it: the batch the
// callers who came meanwhile wait for runs on the same goroutine when it
// ends, a batch started soon after one ended on the worker left idle
// (a deep call's goroutine keeps its grown stack), and an idle worker
// exits after a while.
func TestBatchesRunOnKeptWorkers(t *testing.T) {
	eachGroup(t, func(t *testing.T, newGroup func(func([]int) int) *coalesce.Group[int, int]) {
		before := runtime.NumGoroutine()
		var mu sync.Mutex
		var ran []string // the goroutine of each call
		gt := newGate()
		g := newGroup(func(items []int) int {
			mu.Lock()
			ran = append(ran, goroutineID())
			mu.Unlock()
			return gt.run(items)
		})
		ctx := context.Background()
		done := make(chan struct{}, 3)
		ask := func(item int) {
			go func() {
				g.Do(ctx, item)
				done <- struct{}{}
			}()
		}
		ask(1)
		<-gt.started
		ask(2)
		testutil.Eventually(t, time.Minute, waitingFor(g, 1))
		gt.release <- struct{}{}
		<-gt.started
		gt.release <- struct{}{}
		<-done
		<-done
		// One call at a time, each after the last one's worker went idle.
		go func() {
			for range gt.started {
				gt.release <- struct{}{}
			}
		}()
		for i := range 20 {
			time.Sleep(2 * time.Millisecond)
			g.Do(ctx, 10+i)
		}
		mu.Lock()
		if ran[1] != ran[0] {
			t.Errorf("the batch waiting when the first ended ran on goroutine %s, the first on %s: want the same", ran[1], ran[0])
		}
		goroutines := map[string]bool{}
		for _, id := range ran[2:] {
			goroutines[id] = true
		}
		mu.Unlock()
		// Scheduling may delay a worker's going idle past a call now and
		// then; a goroutine a batch would be 20.
		if len(goroutines) > 3 {
			t.Errorf("20 calls, one after another, ran on %d goroutines: want the idle worker to take them", len(goroutines))
		}
		close(gt.started)
		testutil.Eventually(t, time.Minute, func() error {
			if n := runtime.NumGoroutine(); n > before {
				return fmt.Errorf("%d goroutines, %d before the group: its idle workers did not exit", n, before)
			}
			return nil
		})
	})
}
