package sdk

import (
	"os/exec"
	"strings"
	"testing"
)

// The SDK (and its examples) must not pull in any server's internals: a
// program that vendors it talks to the cluster over the api package only.
// This reads the real import graph with `go list -deps`.
func TestSDKImportsNoServerPackages(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(mod))
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".", "./examples/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	// The roles' packages, and what only servers use.
	servers := []string{"fsmaster", "blockworker", "jobmaster", "jobworker", "plans", "proxy", "cmd", "ufs",
		"internal/config", "internal/logging", "internal/testutil"}
	// What the SDK may use: the wire types and small client-safe helpers.
	allowed := map[string]bool{"api": true, "internal/client": true, "internal/rpc": true, "internal/paths": true, "internal/jobview": true, "internal/humanize": true, "internal/coalesce": true,
		"plans/spec":        true, // the plans' config types: a leaf the SDK re-exports
		"internal/pipespec": true} // a pipeline definition's YAML form and checks: a leaf
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages: %q", len(deps), out)
	}
	var sdkSeen bool
	for _, dep := range deps {
		rel, ok := strings.CutPrefix(dep, module+"/")
		if !ok {
			continue // the standard library and third-party modules
		}
		if rel == "sdk" || strings.HasPrefix(rel, "sdk/") {
			sdkSeen = true
			continue
		}
		server := false
		for _, s := range servers {
			if allowed[rel] {
				break
			}
			if rel == s || strings.HasPrefix(rel, s+"/") {
				t.Errorf("the SDK depends on server package %s", dep)
				server = true
			}
		}
		if !server && !allowed[rel] {
			t.Errorf("the SDK depends on %s, which is not on the list of client-safe packages (api, internal/client, internal/rpc, internal/paths, internal/jobview, internal/humanize, plans/spec, internal/pipespec)", dep)
		}
	}
	if !sdkSeen {
		t.Fatalf("go list -deps did not list the sdk itself: %q", deps)
	}
}
