package testutil

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNetFaults checks the harness itself: hosts reach each other by
// name, and a link down, a partition and a one-way cut stop traffic until
// healed.
func TestNetFaults(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 for a test server")
	}
	n := NewNet(t)
	a, b := n.AddHost("ha"), n.AddHost("hb")
	srv := a.StartProgram("http", nil, "python3", "-m", "http.server", "8080", "--bind", a.IP)
	defer srv.Kill()
	get := func() error {
		return b.Command("python3", "-c", "import urllib.request as u; u.urlopen('http://ha:8080/', timeout=1).read()").Run()
	}
	Eventually(t, 10*time.Second, get)
	a.LinkDown()
	if get() == nil {
		t.Fatal("reached a host whose link is down")
	}
	a.LinkUp()
	Eventually(t, 10*time.Second, get)
	heal := n.Partition([]*Host{a}, []*Host{b})
	if get() == nil {
		t.Fatal("reached a host across a partition")
	}
	heal()
	Eventually(t, 10*time.Second, get)
	heal = n.CutOneWay([]*Host{a}, []*Host{b})
	if get() == nil {
		t.Fatal("got an answer back across a one-way cut")
	}
	heal()
	Eventually(t, 10*time.Second, get)
	undo, err := a.Impair(0, 100)
	if err != nil {
		t.Fatalf("impair: %v", err)
	}
	if get() == nil {
		t.Fatal("an answer crossed 100% loss")
	}
	undo()
	Eventually(t, 10*time.Second, get)
	if _, err := a.Impair(50*time.Millisecond, 0); err != nil && err != ErrNoNetem {
		t.Fatalf("impair delay: %v", err)
	} else if err == ErrNoNetem {
		t.Log("delay not tried: " + err.Error())
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if !strings.Contains(string(out), a.ns) {
		t.Fatalf("namespace %s missing: %s", a.ns, out)
	}
}
