package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/testutil"
)

// A Joiner makes a lone call as the single call, and the calls of one key
// that come while it is in flight as one batch, each answered on its own
// (its error or its answer), at most max a batch; other keys' calls never
// join them; a batch's failure fails all its calls.
func TestJoinerJoinsCallsOfOneKey(t *testing.T) {
	started, release := make(chan string, 8), make(chan struct{})
	var mu sync.Mutex
	var batches [][]string
	failBatch := false
	j := coalesce.NewJoiner(2, func(key string) context.Context { return context.Background() },
		func(ctx context.Context, req string) (string, error) {
			started <- req
			<-release
			return "single " + req, nil
		}, func(ctx context.Context, reqs []string) ([]string, []error, error) {
			mu.Lock()
			defer mu.Unlock()
			if failBatch {
				return nil, nil, errors.New("batch failed")
			}
			batches = append(batches, reqs)
			resps, errs := make([]string, len(reqs)), make([]error, len(reqs))
			for i, r := range reqs {
				if r == "bad" {
					errs[i] = fmt.Errorf("%s refused", r)
					continue
				}
				resps[i] = "batched " + r
			}
			return resps, errs, nil
		})
	type answer struct{ req, resp, err string }
	answers := make(chan answer, 8)
	call := func(key, req string) {
		go func() {
			resp, err := j.Do(context.Background(), key, req)
			a := answer{req: req, resp: resp}
			if err != nil {
				a.err = err.Error()
			}
			answers <- a
		}()
	}
	call("k", "first")
	if got := <-started; got != "first" {
		t.Fatalf("single call of %q", got)
	}
	for _, r := range []string{"a", "bad", "c"} {
		call("k", r)
	}
	testutil.Eventually(t, time.Minute, func() error {
		if n := j.Waiting("k"); n != 3 {
			return fmt.Errorf("%d calls wait for the next batch, want 3", n)
		}
		return nil
	})
	release <- struct{}{}
	want := map[string]answer{
		"first": {"first", "single first", ""}, "a": {"a", "batched a", ""},
		"bad": {"bad", "", "bad refused"}, "c": {"c", "batched c", ""},
	}
	for range 4 {
		a := <-answers
		if a != want[a.req] {
			t.Errorf("%s: answered %+v, want %+v", a.req, a, want[a.req])
		}
	}
	mu.Lock()
	if len(batches) != 2 || len(batches[0])+len(batches[1]) != 3 {
		t.Errorf("batches %v: want the three calls in batches of at most 2", batches)
	}
	failBatch = true
	mu.Unlock()
	// Another key's lone call goes alone (a batch of k in flight or not).
	call("other", "x")
	if got := <-started; got != "x" {
		t.Fatalf("single call of %q", got)
	}
	call("other", "y")
	call("other", "z")
	testutil.Eventually(t, time.Minute, func() error {
		if n := j.Waiting("other"); n != 2 {
			return fmt.Errorf("%d calls wait for the next batch, want 2", n)
		}
		return nil
	})
	release <- struct{}{}
	for range 3 {
		a := <-answers
		if a.req != "x" && a.err != "batch failed" {
			t.Errorf("%s in a failed batch: %+v", a.req, a)
		}
	}
}
