package membership

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

type leaderJSON struct {
	LeaderID string `json:"leaderId"`
	Servers  []struct {
		ID            string `json:"id"`
		RPCAddress    string `json:"rpcAddress"`
		Leader        bool   `json:"leader"`
		Unreachable   bool   `json:"unreachable"`
		UnreachableMs int64  `json:"unreachableSinceMs"`
	} `json:"servers"`
}

// TestJobLeaderShowsKilledMember: raft's configuration lists a killed
// member as a follower like any other; `job leader` says it is
// unreachable (the leader's heartbeats to it fail), and a follower again
// once it is back.
func TestJobLeaderShowsKilledMember(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 3})
	leader := func() leaderJSON {
		t.Helper()
		var l leaderJSON
		if err := json.Unmarshal([]byte(c.MustCLI("job", "leader", "--output", "json")), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	var before leaderJSON
	testutil.Eventually(t, 30*time.Second, func() error {
		before = leader()
		if before.LeaderID == "" || len(before.Servers) != 3 {
			return fmt.Errorf("job leader = %+v, want a leader and three members", before)
		}
		for _, s := range before.Servers {
			if s.Unreachable {
				return fmt.Errorf("%s unreachable before any kill", s.ID)
			}
		}
		return nil
	})
	// Kill a follower (the leader answers job leader).
	victim := -1
	var victimID string
	for i, addr := range c.JobMasterAddrs {
		for _, s := range before.Servers {
			if s.RPCAddress == addr && !s.Leader {
				victim, victimID = i, s.ID
			}
		}
		if victim >= 0 {
			break
		}
	}
	if victim < 0 {
		t.Fatalf("no follower among %v in %+v", c.JobMasterAddrs, before)
	}
	c.JobMasters[victim].Kill()

	testutil.Eventually(t, 30*time.Second, func() error {
		l := leader()
		for _, s := range l.Servers {
			switch {
			case s.ID == victimID && (!s.Unreachable || s.UnreachableMs == 0):
				return fmt.Errorf("killed %s: %+v", victimID, s)
			case s.ID != victimID && s.Unreachable:
				return fmt.Errorf("%s, alive, listed unreachable", s.ID)
			}
		}
		return nil
	})
	// The table: the killed member unreachable, the others leader and
	// follower.
	table := c.MustCLI("job", "leader")
	roles := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] != "ID" && f[0] != "Leader" {
			roles[f[0]] = strings.Join(f[3:], " ")
		}
	}
	if !strings.HasPrefix(roles[victimID], "unreachable (heartbeats failing for") {
		t.Fatalf("job leader lists the killed %s as %q:\n%s", victimID, roles[victimID], table)
	}
	alive := []string{}
	for id, r := range roles {
		if id != victimID {
			alive = append(alive, r)
		}
	}
	sort.Strings(alive)
	if strings.Join(alive, ",") != "follower,leader" {
		t.Fatalf("job leader lists the two live members as %v, want a leader and a follower:\n%s", alive, table)
	}

	// Back: a follower again.
	c.StartJobMaster(victim)
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, s := range leader().Servers {
			if s.Unreachable {
				return fmt.Errorf("%s still unreachable after its restart", s.ID)
			}
		}
		return nil
	})
}
