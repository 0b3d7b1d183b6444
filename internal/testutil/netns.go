package testutil

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A Net is a network of hosts for one test, as separate machines would be:
// each host is a Linux network namespace with its own address (10.77.0.N)
// on a bridge the test creates, and reaches the others by name (the
// namespace's /etc/hosts, which `ip netns exec` mounts over /etc/hosts).
// The bridge has no address in the test's own namespace, so nothing of a
// Net is reachable from the host machine, and two tests' Nets — other
// agents run tests on this machine at the same time — never meet: the
// test talks to its cluster by running commands on its hosts (Run, Start).
//
// Faults are the kernel's: a host's link down, routes that drop what one
// group sends another (a two-way or one-way partition), and tc netem
// delay and loss where the kernel has netem (else loss with nftables).
//
// Every namespace, link and file a Net makes is removed when the test
// ends, failed or not. Names carry the test process's pid, so a Net left
// behind by a process that was killed is removed by the next NewNet.
type Net struct {
	t      testing.TB
	prefix string // alv-<pid>-<rand>-
	tag    string // <pid hex><rand hex>, for link names (15 bytes at most)
	bridge string

	mu    sync.Mutex
	hosts []*Host
}

// Host is one namespace of a Net.
type Host struct {
	Net  *Net
	Name string // its host name on the Net
	IP   string
	ns   string
	veth string // the bridge side of its link, in the test's namespace
}

const netnsSubnet = "10.77.0."

var netnsSweep sync.Once

// NewNet makes an empty Net, or skips the test (one line) where network
// namespaces cannot be made: not root, no `ip`, no netns support.
func NewNet(t testing.TB) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("multi-host test: needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("multi-host test: no `ip` command (iproute2)")
	}
	netnsSweep.Do(sweepStaleNets)
	pid := os.Getpid()
	r := rand.IntN(1 << 8)
	n := &Net{t: t, prefix: fmt.Sprintf("alv-%d-%02x-", pid, r), tag: fmt.Sprintf("%x%02x", pid, r)}
	n.bridge = "ab" + n.tag
	// Probe: a namespace we can make and remove.
	probe := n.prefix + "probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("multi-host test: cannot create a network namespace: %s", strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	t.Cleanup(n.destroy)
	n.must("ip", "link", "add", n.bridge, "type", "bridge")
	n.must("ip", "link", "set", n.bridge, "up")
	return n
}

// must runs a command of the harness, failing the test on error.
func (n *Net) must(args ...string) string {
	n.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("multi-host: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out)
}

// AddHost adds a host named name (a short word: m1, w2, client).
func (n *Net) AddHost(name string) *Host {
	n.t.Helper()
	n.mu.Lock()
	i := len(n.hosts)
	n.mu.Unlock()
	if i >= 200 {
		n.t.Fatalf("multi-host: too many hosts")
	}
	h := &Host{Net: n, Name: name, IP: netnsSubnet + strconv.Itoa(i+2), ns: n.prefix + name, veth: fmt.Sprintf("av%s%d", n.tag, i)}
	n.must("ip", "netns", "add", h.ns)
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	n.must("ip", "link", "add", h.veth, "type", "veth", "peer", "name", h.veth+"p")
	n.must("ip", "link", "set", h.veth+"p", "netns", h.ns)
	n.must("ip", "link", "set", h.veth, "master", n.bridge)
	n.must("ip", "link", "set", h.veth, "up")
	n.must("ip", "-n", h.ns, "link", "set", h.veth+"p", "name", "eth0")
	n.must("ip", "-n", h.ns, "addr", "add", h.IP+"/24", "dev", "eth0")
	n.must("ip", "-n", h.ns, "link", "set", "eth0", "up")
	n.must("ip", "-n", h.ns, "link", "set", "lo", "up")
	n.writeHosts()
	return h
}

// Hosts returns the hosts in the order they were added.
func (n *Net) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Host(nil), n.hosts...)
}

// writeHosts gives every host an /etc/hosts naming all of them.
func (n *Net) writeHosts() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for _, h := range n.hosts {
		fmt.Fprintf(&b, "%s %s\n", h.IP, h.Name)
	}
	for _, h := range n.hosts {
		dir := filepath.Join("/etc/netns", h.ns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			n.t.Fatalf("multi-host: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644); err != nil {
			n.t.Fatalf("multi-host: %v", err)
		}
	}
}

// destroy removes every namespace, link and file of the Net.
func (n *Net) destroy() {
	n.mu.Lock()
	hosts := append([]*Host(nil), n.hosts...)
	n.mu.Unlock()
	for _, h := range hosts {
		// Deleting the namespace deletes its end of the veth pair, and
		// with it the pair.
		if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil {
			n.t.Logf("multi-host cleanup: ip netns del %s: %v: %s", h.ns, err, out)
		}
		_ = exec.Command("ip", "link", "del", h.veth).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", h.ns))
	}
	if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil {
		n.t.Logf("multi-host cleanup: ip link del %s: %v: %s", n.bridge, err, out)
	}
}

// sweepStaleNets removes what Nets of test processes that no longer run
// left behind (a test binary killed before its cleanup).
func sweepStaleNets() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	dead := map[int]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "alv-") {
			continue
		}
		parts := strings.SplitN(f[0], "-", 4)
		if len(parts) < 4 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || processAlive(pid) {
			continue
		}
		dead[pid] = true
		_ = exec.Command("ip", "netns", "del", f[0]).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", f[0]))
	}
	links, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	if err != nil {
		return
	}
	for pid := range dead {
		tag := fmt.Sprintf("ab%x", pid)
		for _, line := range strings.Split(string(links), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 {
				name := strings.TrimSuffix(f[1], ":")
				if strings.HasPrefix(name, tag) && len(name) == len(tag)+2 {
					_ = exec.Command("ip", "link", "del", name).Run()
				}
			}
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Addr is name:port.
func (h *Host) Addr(port int) string { return fmt.Sprintf("%s:%d", h.Name, port) }

// Command returns a command that runs argv on the host.
func (h *Host) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.ns}, argv...)...)
}

// Start runs the alluvium binary on the host, supervised as testutil.Start
// does (its pid is the binary's: `ip netns exec` execs it).
func (h *Host) Start(name string, env []string, args ...string) *Process {
	h.Net.t.Helper()
	return Start(h.Net.t, name, "ip", env, append([]string{"netns", "exec", h.ns, Binary(h.Net.t)}, args...)...)
}

// StartProgram runs any program on the host, supervised.
func (h *Host) StartProgram(name string, env []string, argv ...string) *Process {
	h.Net.t.Helper()
	return Start(h.Net.t, name, "ip", env, append([]string{"netns", "exec", h.ns}, argv...)...)
}

// Run runs the alluvium binary (a CLI command) on the host to completion.
func (h *Host) Run(env []string, args ...string) (stdout, stderr string, code int) {
	h.Net.t.Helper()
	return Run(h.Net.t, "ip", env, append([]string{"netns", "exec", h.ns, Binary(h.Net.t)}, args...)...)
}

// RunProgram runs any program on the host to completion.
func (h *Host) RunProgram(env []string, argv ...string) (stdout, stderr string, code int) {
	h.Net.t.Helper()
	return Run(h.Net.t, "ip", env, append([]string{"netns", "exec", h.ns}, argv...)...)
}

// exec runs a harness command on the host.
func (h *Host) exec(args ...string) error {
	out, err := h.Command(args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s on %s: %v: %s", strings.Join(args, " "), h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// LinkDown takes the host's link down: it reaches nobody and nobody it,
// as with a pulled cable. LinkUp restores it.
func (h *Host) LinkDown() {
	h.Net.t.Helper()
	if err := h.exec("ip", "link", "set", "eth0", "down"); err != nil {
		h.Net.t.Fatalf("multi-host: %v", err)
	}
}

// LinkUp brings the host's link back (and its address).
func (h *Host) LinkUp() {
	h.Net.t.Helper()
	if err := h.exec("ip", "link", "set", "eth0", "up"); err != nil {
		h.Net.t.Fatalf("multi-host: %v", err)
	}
}

// Partition drops everything the hosts of a send to those of b and back
// (blackhole routes in every host's namespace); heal restores the routes.
func (n *Net) Partition(a, b []*Host) (heal func()) {
	n.t.Helper()
	h1 := n.CutOneWay(a, b)
	h2 := n.CutOneWay(b, a)
	return func() { h1(); h2() }
}

// CutOneWay drops what the hosts of from send to those of to (a one-way
// partition: to's packets still reach from, its answers do not return).
func (n *Net) CutOneWay(from, to []*Host) (heal func()) {
	n.t.Helper()
	var undo [][]string
	for _, f := range from {
		for _, d := range to {
			if f == d {
				continue
			}
			if err := f.exec("ip", "route", "add", "blackhole", d.IP+"/32"); err != nil {
				n.t.Fatalf("multi-host: %v", err)
			}
			undo = append(undo, []string{f.ns, d.IP})
		}
	}
	return func() {
		for _, u := range undo {
			_ = exec.Command("ip", "netns", "exec", u[0], "ip", "route", "del", "blackhole", u[1]+"/32").Run()
		}
	}
}

// ErrNoNetem says the kernel has no netem qdisc.
var ErrNoNetem = errors.New("the kernel has no tc netem (sch_netem)")

// Impair adds delay and loss (percent) to everything the host sends, with
// tc netem. Without netem in the kernel, loss alone falls back to an
// nftables rule; a delay then returns ErrNoNetem. undo removes it.
func (h *Host) Impair(delay time.Duration, lossPct int) (undo func(), err error) {
	args := []string{"tc", "qdisc", "add", "dev", "eth0", "root", "netem"}
	if delay > 0 {
		args = append(args, "delay", fmt.Sprintf("%dus", delay.Microseconds()))
	}
	if lossPct > 0 {
		args = append(args, "loss", fmt.Sprintf("%d%%", lossPct))
	}
	err = h.exec(args...)
	if err == nil {
		return func() { _ = h.exec("tc", "qdisc", "del", "dev", "eth0", "root") }, nil
	}
	if !strings.Contains(err.Error(), "Specified qdisc kind is unknown") {
		return nil, err
	}
	if delay > 0 {
		return nil, ErrNoNetem
	}
	if _, lerr := exec.LookPath("nft"); lerr != nil {
		return nil, fmt.Errorf("%w, and no nft for loss", ErrNoNetem)
	}
	table, match := "alvloss", ""
	if lossPct < 100 {
		match = fmt.Sprintf("numgen random mod 100 < %d ", lossPct)
	}
	rules := fmt.Sprintf("table inet %s {\n chain out {\n  type filter hook output priority 0;\n  oifname \"eth0\" %sdrop\n }\n}\n", table, match)
	cmd := h.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nft on %s: %v: %s", h.Name, err, strings.TrimSpace(string(out)))
	}
	return func() { _ = h.exec("nft", "delete", "table", "inet", table) }, nil
}
