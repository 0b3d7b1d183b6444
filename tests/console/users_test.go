package console

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const (
	aliceToken = "alice-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdef012"
)

// TestConsoleActsAsTheUser: logged in with her own token, alice sees and
// does through the console only what her permissions allow, because the
// console calls the cluster as her — bob's private directory is refused,
// its file cannot be downloaded, bob's job cannot be canceled — while the
// superuser's session may.
func TestConsoleActsAsTheUser(t *testing.T) {
	b := newBrowser(t)
	b.artifacts = artifactsDir(t)
	bin, base := testutil.Binary(t), testutil.PortBase(t)
	root := t.TempDir()
	home, ufs := filepath.Join(root, "home"), filepath.Join(root, "ufs")
	if err := os.MkdirAll(ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := testutil.WriteFile(t, filepath.Join(root, "alluvium.yaml"), []byte(fmt.Sprintf(`
security:
  users:
    alice: %s
    bob: %s
fsmaster:
  user:
    block-size: 1048576
`, aliceToken, bobToken)))
	p := testutil.Start(t, "local", bin, []string{"ALLUVIUM_TOKEN="}, "local", "--home", home, "--ufs", ufs,
		"--workers", "1", "--port-base", fmt.Sprint(base), "--config", conf)
	p.WaitLog("ready", 90*time.Second)
	token, err := os.ReadFile(filepath.Join(home, "token"))
	if err != nil {
		t.Fatal(err)
	}
	ui := fmt.Sprintf("http://127.0.0.1:%d/ui/", base+1)
	ctx := context.Background()
	dial := func(tok string) *sdk.Client {
		c, err := sdk.Dial(ctx, sdk.WithMaster(fmt.Sprintf("localhost:%d", base)), sdk.WithJobMasters(fmt.Sprintf("localhost:%d", base+3)), sdk.WithToken(tok))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	super, bob := dial(strings.TrimSpace(string(token))), dial(bobToken)

	// bob's private directory with a file, and a slow job of his on it.
	if _, err := super.Mkdir(ctx, "/home/bob", sdk.MkdirOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := super.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/home/bob", Owner: proto.String("bob"), Group: proto.String("bob")}); err != nil {
		t.Fatal(err)
	}
	// Written THROUGH (never cached): the slow load moves every byte at its
	// 64 KiB/s (bandwidth is spent on the bytes that flow; a block a free
	// has not removed yet would let the load end at once).
	w, err := bob.Create(ctx, "/home/bob/private.bin", sdk.CreateOptions{WriteType: api.WriteType_THROUGH})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/home/bob", Mode: proto.Uint32(0o700)}); err != nil {
		t.Fatal(err)
	}
	bobJobs, err := bob.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	id, err := bobJobs.Submit(ctx, "load", sdk.LoadConfig{Path: "/home/bob", Bandwidth: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}

	b.run("log in as alice", 30*time.Second, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SetValue(chromedp.CSS("#token"), aliceToken), chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#ov-fsmaster")))
	if who := b.text("#who"); who != "alice" {
		t.Fatalf("logged in as %q, want alice", who)
	}

	b.run("browse bob's private directory", 20*time.Second, chromedp.Navigate(ui+"browse?path=/home/bob"), chromedp.WaitVisible(chromedp.CSS("#app .err")))
	if msg := b.text("#app .err"); !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "alice") {
		t.Fatalf("alice browsing /home/bob sees %q, want a permission error naming her", msg)
	}
	b.shot("user-browse-denied")
	if code := evalJS[int](b, `fetch('/ui/api/download?path=/home/bob/private.bin').then(r => r.status)`); code != 403 {
		t.Fatalf("alice downloading bob's file: %d, want 403", code)
	}

	// Jobs are their submitter's (jobmaster.job.visible-to-all is off): to
	// alice, bob's job is one that does not exist, and so is cancelling it.
	b.run("open bob's job", 20*time.Second, chromedp.Navigate(fmt.Sprintf("%sjobs/%d", ui, id)), chromedp.WaitVisible(chromedp.CSS("#app .err")))
	if msg := b.text("#app .err"); !strings.Contains(msg, "not found") {
		t.Fatalf("alice opening bob's job sees %q, want not found", msg)
	}
	if code := evalJS[int](b, fmt.Sprintf(`fetch('/ui/api/session').then(r => r.json()).then(s => fetch('/ui/api/jobs/%d/cancel', {method: 'POST', headers: {[s.csrfHeader]: s.csrf}})).then(r => r.status)`, id)); code != 404 {
		t.Fatalf("alice cancelling bob's job through the console API: %d, want 404 (a job she may not see)", code)
	}
	if j, err := bobJobs.Get(ctx, id, false); err != nil || sdk.IsTerminal(j.GetStatus()) {
		t.Fatalf("bob's job after alice's cancel: %v %v, want it still running", j, err)
	}
	b.shot("user-cancel-refused")

	// The superuser's session may.
	b.run("log out", 20*time.Second, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#logout")), chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.run("log in as the superuser", 30*time.Second, chromedp.SetValue(chromedp.CSS("#token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS("#ov-fsmaster")))
	b.run("browse bob's private directory", 20*time.Second, chromedp.Navigate(ui+"browse?path=/home/bob"),
		chromedp.WaitVisible(chromedp.CSS(`#files tr[data-path="/home/bob/private.bin"]`)))
	b.run("cancel bob's job", 20*time.Second, chromedp.Navigate(fmt.Sprintf("%sjobs/%d", ui, id)), chromedp.WaitVisible(chromedp.CSS("#job-cancel")),
		chromedp.Click(chromedp.CSS("#job-cancel")), chromedp.Click(chromedp.CSS("#job-cancel")))
	b.waitJS("the page shows CANCELED", `document.querySelector('#job-status .badge').dataset.status === 'CANCELED'`, 30*time.Second)
	if j, err := bobJobs.Get(ctx, id, false); err != nil || j.GetStatus() != sdk.JobCanceled {
		t.Fatalf("bob's job after the superuser's cancel: %v %v", j, err)
	}
	if err := p.Stop(30 * time.Second); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("alluvium local after SIGTERM: %v", err)
	}
}
