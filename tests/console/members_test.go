package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestConsoleShowsAnUnreachableMaster: three job masters, a follower
// SIGKILLed — the overview's group table marks it UNREACHABLE (the leader's
// heartbeats to it fail) instead of FOLLOWER, and FOLLOWER again once it is
// back.
func TestConsoleShowsAnUnreachableMaster(t *testing.T) {
	b := newBrowser(t)
	b.artifacts = artifactsDir(t)
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 3, FSMasterJobMaster: true})
	leader, _ := c.JobMasterLeader(-1)
	follower := (leader + 1) % 3
	ui := fmt.Sprintf("http://127.0.0.1:%d/ui/", c.PortBase+1)

	b.run("log in", 30*time.Second, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SetValue(chromedp.CSS("#token"), testutil.ClusterToken()), chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#ov-jobmasters")))
	row := func(i int) string {
		// The row of job master i, found by its RPC address.
		return fmt.Sprintf(`([...document.querySelectorAll('#ov-jobmasters tbody tr')].find(r => r.textContent.includes(%q))?.textContent || '')`, c.JobMasterAddrs[i])
	}
	b.waitJS("the group lists the follower as FOLLOWER", row(follower)+`.includes('FOLLOWER')`, 30*time.Second)

	c.JobMasters[follower].Kill()
	// The overview refreshes itself; the leader notices failing heartbeats
	// within its heartbeat timeout.
	b.waitJS("the killed follower shows UNREACHABLE", row(follower)+`.includes('UNREACHABLE')`, 60*time.Second)
	b.shot("jobmaster-unreachable")
	if txt := evalJS[string](b, row(leader)); !strings.Contains(txt, "LEADER") {
		t.Fatalf("the leader's row reads %q", txt)
	}

	c.JobMasters[follower] = c.StartJobMaster(follower)
	b.waitJS("the restarted follower is FOLLOWER again", row(follower)+`.includes('FOLLOWER')`, 60*time.Second)
}
