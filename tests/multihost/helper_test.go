package multihost

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// The test binary runs as a helper on the client host when ALV_MH_HELPER
// names a mode: many clients at once, as no CLI call could be.
//
//	create: ALV_MH_CLIENTS clients create empty files under ALV_MH_DIR
//	        until ALV_MH_STOP exists; every create the cluster acknowledged
//	        is appended to ALV_MH_ACKS (one write per line) as it returns.
//	verify: every path in ALV_MH_ACKS is in the listing of ALV_MH_DIR,
//	        which holds no name twice; prints a verifyResult.
func TestMain(m *testing.M) {
	if mode := os.Getenv("ALV_MH_HELPER"); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	ctx := context.Background()
	c, err := sdk.Dial(ctx, sdk.FromEnv(), sdk.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	switch mode {
	case "create":
		return helperCreate(ctx, c)
	case "verify":
		return helperVerify(ctx, c)
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

type createResult struct {
	Acked  int64    `json:"acked"`
	Failed int64    `json:"failed"`
	Errors []string `json:"errors"` // a sample
}

func helperCreate(ctx context.Context, c *sdk.Client) int {
	n, _ := strconv.Atoi(os.Getenv("ALV_MH_CLIENTS"))
	dir, stop := os.Getenv("ALV_MH_DIR"), os.Getenv("ALV_MH_STOP")
	acks, err := os.OpenFile(os.Getenv("ALV_MH_ACKS"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer acks.Close()
	var (
		res   createResult
		mu    sync.Mutex
		wg    sync.WaitGroup
		acked atomic.Int64
	)
	stopped := func() bool { _, err := os.Stat(stop); return err == nil }
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; !stopped(); j++ {
				p := fmt.Sprintf("%s/c%02d-%06d", dir, i, j)
				w, err := c.Create(ctx, p, sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE})
				if err == nil {
					err = w.Close()
				}
				if err != nil {
					mu.Lock()
					res.Failed++
					if len(res.Errors) < 20 {
						res.Errors = append(res.Errors, err.Error())
					}
					mu.Unlock()
					continue
				}
				mu.Lock()
				_, werr := acks.WriteString(p + "\n")
				mu.Unlock()
				if werr != nil {
					fmt.Fprintln(os.Stderr, werr)
					os.Exit(2)
				}
				acked.Add(1)
			}
		}(i)
	}
	wg.Wait()
	res.Acked = acked.Load()
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

type verifyResult struct {
	Acked   int      `json:"acked"`
	Listed  int      `json:"listed"`
	Missing []string `json:"missing"` // the first few
	Dups    []string `json:"dups"`
}

func helperVerify(ctx context.Context, c *sdk.Client) int {
	f, err := os.Open(os.Getenv("ALV_MH_ACKS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	seen := map[string]int{}
	var res verifyResult
	for fi, err := range c.List(ctx, os.Getenv("ALV_MH_DIR"), sdk.ListOptions{}) {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		seen[fi.GetPath()]++
		res.Listed++
		if seen[fi.GetPath()] == 2 {
			res.Dups = append(res.Dups, fi.GetPath())
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		res.Acked++
		if seen[sc.Text()] == 0 && len(res.Missing) < 20 {
			res.Missing = append(res.Missing, sc.Text())
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if len(res.Missing) > 0 || len(res.Dups) > 0 {
		return 1
	}
	return 0
}

// creators is a running create helper.
type creators struct {
	c    *cluster
	p    *testutil.Process
	acks string
	stop string
	dir  string
}

// startCreators starts n clients creating files under dir (made first).
func (c *cluster) startCreators(n int, dir string) *creators {
	c.t.Helper()
	c.mustCLI("fs", "mkdir", dir)
	base := filepath.Join(c.dir, "helper-"+filepath.Base(dir))
	cr := &creators{c: c, acks: base + ".acks", stop: base + ".stop", dir: dir}
	env := append(clientEnv(), "ALV_MH_HELPER=create", "ALV_MH_CLIENTS="+strconv.Itoa(n), "ALV_MH_DIR="+dir,
		"ALV_MH_ACKS="+cr.acks, "ALV_MH_STOP="+cr.stop)
	cr.p = c.client.StartProgram("creators", env, os.Args[0], "-test.run=^$")
	return cr
}

// acked is how many creates were acknowledged so far.
func (cr *creators) acked() int {
	b, _ := os.ReadFile(cr.acks)
	n := 0
	for _, ch := range b {
		if ch == '\n' {
			n++
		}
	}
	return n
}

// waitAcked waits until at least n creates were acknowledged.
func (cr *creators) waitAcked(n int, timeout time.Duration) {
	cr.c.t.Helper()
	testutil.Eventually(cr.c.t, timeout, func() error {
		if got := cr.acked(); got < n {
			return fmt.Errorf("%d of %d creates acknowledged", got, n)
		}
		return nil
	})
}

// finish stops the clients and returns their result.
func (cr *creators) finish() createResult {
	cr.c.t.Helper()
	if err := os.WriteFile(cr.stop, nil, 0o644); err != nil {
		cr.c.t.Fatal(err)
	}
	if err := cr.p.Wait(2 * time.Minute); err != nil {
		cr.c.t.Fatalf("creators: %v", err)
	}
	var res createResult
	b, _ := os.ReadFile(cr.p.LogPath)
	for _, line := range splitLines(string(b)) {
		if json.Unmarshal([]byte(line), &res) == nil && res.Acked > 0 {
			break
		}
	}
	cr.c.t.Logf("creators: %d acknowledged, %d failed (e.g. %v)", res.Acked, res.Failed, first(res.Errors, 3))
	return res
}

// verify checks every acknowledged create is there, none twice.
func (cr *creators) verify() verifyResult {
	cr.c.t.Helper()
	env := append(clientEnv(), "ALV_MH_HELPER=verify", "ALV_MH_DIR="+cr.dir, "ALV_MH_ACKS="+cr.acks)
	out, errOut, code := cr.c.client.RunProgram(env, os.Args[0], "-test.run=^$")
	var res verifyResult
	_ = json.Unmarshal([]byte(out), &res)
	if code != 0 {
		cr.c.t.Fatalf("verify: exit %d: %s%s", code, out, errOut)
	}
	if res.Acked == 0 || res.Listed < res.Acked {
		cr.c.t.Fatalf("verify: %+v", res)
	}
	cr.c.t.Logf("verify: all %d acknowledged creates present (%d listed), none twice", res.Acked, res.Listed)
	return res
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func first(xs []string, n int) []string {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}
