package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/alluvium/alluvium"

// srcFile is one parsed non-generated Go file of the module.
type srcFile struct {
	rel  string // path from the repository root, with slashes
	pkg  string // its directory, with slashes
	test bool
	fset *token.FileSet
	f    *ast.File
}

// repoRoot is two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// parseTree parses every Go file of the module but generated code.
func parseTree(t *testing.T) []srcFile {
	t.Helper()
	root := repoRoot(t)
	var out []srcFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "vendor", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".pb.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		out = append(out, srcFile{rel: rel, pkg: filepath.ToSlash(filepath.Dir(rel)), test: strings.HasSuffix(p, "_test.go"), fset: fset, f: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("parsed only %d files under %s", len(out), root)
	}
	return out
}

// imports maps the local name of each import of f to its path.
func imports(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, is := range f.Imports {
		path, _ := strconv.Unquote(is.Path.Value)
		name := path[strings.LastIndex(path, "/")+1:]
		if is.Name != nil {
			name = is.Name.Name
		}
		m[name] = path
	}
	return m
}

// calls visits every call of pkg.Fun in f (pkg by import path).
func calls(f *ast.File, pkgPath string, visit func(fun string, pos token.Pos)) {
	local := ""
	for name, p := range imports(f) {
		if p == pkgPath {
			local = name
		}
	}
	if local == "" {
		return
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == local {
			visit(sel.Sel.Name, sel.Pos())
		}
		return true
	})
}

// Every client of the cluster goes through internal/client: leader
// discovery, retries and auth live there once. A production file that makes
// its own gRPC connection or stub breaks that (tests may forge calls).
func TestOnlyTheClientLayerDials(t *testing.T) {
	// sdk/planplugin's stubs are a plan plugin's link to the process that
	// started it (go-plugin's broker), not connections to the cluster.
	layer := map[string]bool{"internal/client": true, "internal/rpc": true, "sdk/planplugin": true}
	n := 0
	for _, s := range parseTree(t) {
		if s.test || layer[s.pkg] {
			continue
		}
		calls(s.f, module+"/api", func(fun string, pos token.Pos) {
			n++
			if strings.HasPrefix(fun, "New") && strings.HasSuffix(fun, "Client") {
				t.Errorf("%s: api.%s outside the client layer (use internal/client)", s.fset.Position(pos), fun)
			}
		})
		calls(s.f, "google.golang.org/grpc", func(fun string, pos token.Pos) {
			if fun == "NewClient" || fun == "Dial" || fun == "DialContext" {
				t.Errorf("%s: grpc.%s outside the client layer (use internal/client)", s.fset.Position(pos), fun)
			}
		})
	}
	if n == 0 {
		t.Fatal("no file uses the api package: the walk found nothing to check")
	}
}

// The CLI is a client of the SDK. It imports a role's package only to start
// that role (or to work on its files offline); these are those files.
func TestCLIImportsRolesOnlyToStartThem(t *testing.T) {
	roles := []string{"fsmaster", "jobmaster", "blockworker", "jobworker", "proxy", "console", "plans", "ufs", "internal/sim"}
	starters := map[string]bool{
		"cmd/alluvium/console.go": true, "cmd/alluvium/format.go": true, "cmd/alluvium/fsjournal.go": true,
		"cmd/alluvium/fsmaster.go": true, "cmd/alluvium/jobmaster.go": true, "cmd/alluvium/local.go": true,
		"cmd/alluvium/proxy.go": true, "cmd/alluvium/secondary.go": true, "cmd/alluvium/worker.go": true,
		"cmd/alluvium/worker_job.go": true, "cmd/alluvium/sim.go": true,
	}
	seen := 0
	for _, s := range parseTree(t) {
		if s.pkg != "cmd/alluvium" || s.test {
			continue
		}
		seen++
		for _, p := range imports(s.f) {
			rel, ok := strings.CutPrefix(p, module+"/")
			if !ok {
				continue
			}
			for _, r := range roles {
				if (rel == r || strings.HasPrefix(rel, r+"/")) && rel != "plans/spec" && !starters[s.rel] {
					t.Errorf("%s imports %s for client work: go through the SDK (or add the file to the starters if it starts that role)", s.rel, p)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("no file of cmd/alluvium parsed")
	}
}

// The scheduler gets typed limits (api.JobLimits in the submit command); it
// never imports the plans or decodes a plan's JSON config. The rest of the
// job master asks plans to validate and plan, and uses of plans/spec only the
// syntax check and the typed result.
func TestSchedulerKnowsNoPlanConfig(t *testing.T) {
	scheduler := map[string]bool{"jobmaster/broker.go": true, "jobmaster/collector.go": true, "jobmaster/heartbeat.go": true}
	specAllowed := map[string]bool{"SyntaxError": true, "Valid": true, "Limits": true}
	found := 0
	for _, s := range parseTree(t) {
		if s.pkg != "jobmaster" || s.test {
			continue
		}
		if scheduler[s.rel] {
			found++
			for _, p := range imports(s.f) {
				if p == module+"/plans" || strings.HasPrefix(p, module+"/plans/") || p == "encoding/json" {
					t.Errorf("%s (the scheduler) imports %s: it gets typed limits, never plan configs", s.rel, p)
				}
			}
		}
		calls(s.f, module+"/plans/spec", func(fun string, pos token.Pos) {
			if !specAllowed[fun] {
				t.Errorf("%s: spec.%s in the job master: plan configs are decoded in plans/ only", s.fset.Position(pos), fun)
			}
		})
	}
	if found != len(scheduler) {
		t.Fatalf("found %d of the scheduler's %d files: update the list when they move", found, len(scheduler))
	}
}
