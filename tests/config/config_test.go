// Package config tests, on the real binary, that configuration a process
// does not understand stops it at start instead of being ignored: a typo'd
// key in its config file or an ALLUVIUM_* variable that sets nothing.
package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// runBriefly runs the binary, which should refuse to start, and returns its
// stderr and exit code; one still running after a minute (a server that
// accepted what it should refuse) fails the test.
func runBriefly(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), append([]string{"ALLUVIUM_TOKEN=" + testutil.ClusterToken(), "GORACE=atexit_sleep_ms=0"}, env...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v still running after a minute: it did not refuse its configuration; stderr:\n%s", args, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", args, err)
	}
	return stderr.String(), cmd.ProcessState.ExitCode()
}

func TestUnknownKeysStopServers(t *testing.T) {
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ports := fmt.Sprintf("fsmaster:\n  rpc-port: %d\n  http-port: %d\n", base, base+1)

	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{
			// The case: the proxy reads client.master, and used to
			// dial localhost without a word.
			name: "proxy file",
			args: []string{"proxy", "--config", write("proxy.yaml", "proxy:\n  master: elsewhere:19998\n")},
			want: "unknown key proxy.master (did you mean client.master?)",
		},
		{
			name: "fsmaster file",
			args: []string{"fsmaster", "--config", write("fsmaster.yaml", ports+"  journal:\n    segment-entrys: 10\n")},
			want: "unknown key fsmaster.journal.segment-entrys (did you mean fsmaster.journal.segment-entries?)",
		},
		{
			name: "fsmaster env",
			env:  []string{"ALLUVIUM_FSMASTER_JOURNAL_DRI=" + dir},
			args: []string{"fsmaster", "--config", write("ok.yaml", ports)},
			want: "ALLUVIUM_FSMASTER_JOURNAL_DRI (did you mean ALLUVIUM_FSMASTER_JOURNAL_DIR (fsmaster.journal.dir)?)",
		},
		{
			name: "client env",
			env:  []string{"ALLUVIUM_MASTERS=localhost:1"},
			args: []string{"fs", "ls", "/"},
			want: "did you mean ALLUVIUM_MASTER?",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			env := append([]string{"ALLUVIUM_HOME=" + home}, c.env...)
			stderr, code := runBriefly(t, bin, env, c.args...)
			if code == 0 {
				t.Fatalf("%v exited 0; stderr:\n%s", c.args, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d; stderr does not say %q:\n%s", code, c.want, stderr)
			}
			// Refused before doing anything: no journal, no token.
			if _, err := os.Stat(home); !os.IsNotExist(err) {
				t.Errorf("the refused process created %s (%v)", home, err)
			}
		})
	}

	// The same files without the typo start: the refusal above is the key's
	// doing, not the rest of the setup.
	home := filepath.Join(dir, "good")
	p := testutil.Start(t, "fsmaster", bin, []string{"ALLUVIUM_HOME=" + home},
		"fsmaster", "--config", write("good.yaml", ports+"  journal:\n    segment-entries: 10\n"))
	p.WaitLog("FS master serving", 60*time.Second)
}
