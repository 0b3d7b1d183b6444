package planplugin

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// With ProfileEnv set, a plugin process serves pprof on loopback and says
// where in DIR/<pid>.pprof-addr.
func TestServeProfiles(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, strconv.Itoa(os.Getpid())+".pprof-addr")
	t.Setenv(ProfileEnv, dir)
	serveProfiles()
	defer runtime.SetBlockProfileRate(0)
	defer runtime.SetMutexProfileFraction(0)
	addr, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + string(addr) + "/debug/pprof/block?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		t.Fatalf("GET block profile: %s, %d bytes", resp.Status, len(b))
	}
}
