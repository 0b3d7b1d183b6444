package testutil

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/alluvium/alluvium/internal/config"
)

// The largest cluster's ports never meet, stay inside the 200 that
// PortBase reserves, and leave P+190.. free for a closed-port test.
func TestClusterPortLayout(t *testing.T) {
	const base = 20000
	owner := map[int]string{}
	take := func(p int, who string) {
		if p < base || p >= base+190 {
			t.Errorf("%s: port %d outside [%d, %d)", who, p, base, base+190)
		}
		if o, ok := owner[p]; ok {
			t.Errorf("port %d of %s is also %s's", p, who, o)
		}
		owner[p] = who
	}
	take(base, "fsmaster rpc")
	take(base+1, "fsmaster http")
	for i := 0; i < maxClusterWorkers; i++ {
		rpc, http, job := config.WorkerPorts(base, i)
		take(rpc, fmt.Sprintf("worker%d rpc", i))
		take(http, fmt.Sprintf("worker%d http", i))
		take(job, fmt.Sprintf("worker%d job", i))
	}
	for i := 0; i < maxClusterJobMasters; i++ {
		b := jobMasterPortBase(base, i)
		take(b+3, fmt.Sprintf("jobmaster%d rpc", i))
		take(b+4, fmt.Sprintf("jobmaster%d http", i))
		take(b+5, fmt.Sprintf("jobmaster%d raft", i))
	}
}

func TestMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || r.Header.Get("Authorization") != "Bearer "+ClusterToken() {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, "# HELP a_total A.\n# TYPE a_total counter\na_total 3\nb{tier=\"MEM\"} 1.5e+06\n\nbroken line\n")
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().(*net.TCPAddr).String()
	m, err := Metrics(addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["a_total"] != 3 || m[`b{tier="MEM"}`] != 1.5e6 {
		t.Fatalf("Metrics = %v", m)
	}
	if v := Metric(t, addr, "a_total"); v != 3 {
		t.Fatalf("Metric a_total = %v", v)
	}
	if _, err := Metrics(addr + "/nope"); err == nil {
		t.Fatal("Metrics of a bad address: no error")
	}
}

// FreePort's ports are distinct, bindable and outside the kernel's
// ephemeral range (where a released ":0" port could be taken by any
// outgoing connection before the test binds it).
func TestFreePort(t *testing.T) {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &lo, &hi)
	}
	seen := map[int]bool{}
	for range 300 { // more than one 200-port range
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p >= lo && p <= hi {
			t.Fatalf("port %d is in the ephemeral range %d-%d", p, lo, hi)
		}
	}
	for p := range seen {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}
