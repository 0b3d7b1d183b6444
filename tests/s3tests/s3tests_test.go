// Package s3tests runs ceph/s3-tests, the S3 conformance suite of Ceph RGW,
// unmodified, against the S3 gateway of `alluvium local`: the suite's
// test_s3.py and test_headers.py, as three users (main, alt, tenant) of
// security.users. Every test must pass except those exclude.txt lists,
// each with the reason — the list is the documentation of what the gateway
// does not do.
//
// The suite is expected at ../shared/third_party/s3-tests from the
// repository root (ALLUVIUM_S3TESTS_DIR overrides), its Python packages
// from Debian (.ci/run installs them). Knobs: ALLUVIUM_S3TESTS_K=EXPR runs
// the tests pytest's -k selects; ALLUVIUM_S3TESTS_ALL=1 runs the excluded
// tests too and lists those that pass (stale rules); ALLUVIUM_S3TESTS_JOBS=N
// runs N pytest workers (pytest-xdist; default 2 when it is installed);
// ALLUVIUM_S3TESTS_TIMEOUT bounds the run (default 20m).
package s3tests

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// s3user is one of the suite's users, as a user of security.users: the
// access key is the user's name, the secret its token.
type s3user struct{ section, name, token string }

// usersOf returns the suite's three users (main, alt, tenant) for pytest
// worker w: each worker has its own, since the suite's tests expect to
// see only their own buckets.
func usersOf(w int) []s3user {
	var out []s3user
	for _, r := range []struct{ section, role string }{{"s3 main", "main"}, {"s3 alt", "alt"}, {"s3 tenant", "tenant"}} {
		name := fmt.Sprintf("s3%s%d", r.role, w)
		out = append(out, s3user{r.section, name, name + "-token-0123456789abcdef"})
	}
	return out
}

// python is Debian's interpreter, which has Debian's packages (a pyenv
// python on PATH would not).
const python = "/usr/bin/python3"

var pythonModules = []string{"pytest", "boto3", "munch", "gevent", "isodate", "pytz", "httplib2", "lxml", "pytest_timeout"}

// missing skips loudly outside CI and fails in CI, where .ci/run installs
// what the suite needs.
func missing(t *testing.T, what string) {
	t.Helper()
	msg := what + ": S3 CONFORMANCE TESTS DID NOT RUN"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("!!! " + msg)
}

func suiteDir(t *testing.T) string {
	t.Helper()
	dirs := []string{os.Getenv("ALLUVIUM_S3TESTS_DIR")}
	if dirs[0] == "" {
		root := testutil.RepoRoot(t)
		// Beside the clone; for a git worktree in <dir>/wt/NAME, beside
		// the main checkout.
		dirs = []string{filepath.Join(root, "..", "shared", "third_party", "s3-tests"),
			filepath.Join(root, "..", "..", "shared", "third_party", "s3-tests")}
	}
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "s3tests", "functional", "test_s3.py")); err == nil {
			return dir
		}
	}
	missing(t, fmt.Sprintf("ceph/s3-tests is not at %s (ALLUVIUM_S3TESTS_DIR)", dirs[0]))
	return ""
}

func checkPython(t *testing.T) {
	t.Helper()
	script := "import importlib, sys\nmiss = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\nprint(' '.join(miss))\n"
	out, err := exec.Command(python, append([]string{"-c", "import importlib.util\n" + script}, pythonModules...)...).CombinedOutput()
	if err != nil {
		missing(t, fmt.Sprintf("%s does not run (%v: %s)", python, err, strings.TrimSpace(string(out))))
	}
	if m := strings.TrimSpace(string(out)); m != "" {
		missing(t, "Python modules missing: "+m+" (apt-get install python3-pytest python3-boto3 python3-munch python3-gevent python3-isodate python3-tz python3-httplib2 python3-lxml python3-pytest-timeout)")
	}
}

func hasXdist() bool {
	return exec.Command(python, "-c", "import xdist").Run() == nil
}

// writeConf writes the suite's configuration for a gateway at host:port.
func writeConf(t *testing.T, path string, port int, users []s3user) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[DEFAULT]\nhost = 127.0.0.1\nport = %d\nis_secure = False\nssl_verify = False\n\n", port)
	// One bucket prefix per run; the suite adds random characters.
	b.WriteString("[fixtures]\nbucket prefix = alluvium-{random}-\n\n")
	for _, u := range users {
		fmt.Fprintf(&b, "[%s]\ndisplay_name = %s\nuser_id = %s\nemail = %s@example.com\naccess_key = %s\nsecret_key = %s\n", u.section, u.name, u.name, u.name, u.name, u.token)
		if u.section == "s3 main" {
			// No api_name: a bucket's location is the gateway's one region.
			b.WriteString("api_name =\n")
		}
		if u.section == "s3 tenant" {
			b.WriteString("tenant = testx\n")
		}
		b.WriteString("\n")
	}
	// The suite reads these sections even when no IAM test runs; they name
	// no user of the cluster, so anything they sign is refused.
	for _, s := range []string{"iam", "iam root", "iam alt root"} {
		key := strings.ReplaceAll(s, " ", "")
		fmt.Fprintf(&b, "[%s]\nemail = %s@example.com\nuser_id = %s\naccess_key = %s\nsecret_key = %s-not-a-user-0123456789\ndisplay_name = %s\n\n", s, key, key, key, key, key)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// junit is the part of pytest's JUnit XML the test reads.
type junit struct {
	Suites []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Time    float64       `xml:"time,attr"`
	Failure *junitProblem `xml:"failure"`
	Error   *junitProblem `xml:"error"`
	Skipped *junitProblem `xml:"skipped"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
}

// baseName is a test's function name (pytest names parametrized tests
// name[params]).
func baseName(name string) string {
	if i := strings.IndexByte(name, '['); i >= 0 {
		return name[:i]
	}
	return name
}

func TestS3Conformance(t *testing.T) {
	if testing.Short() {
		t.Skip("s3-tests take minutes")
	}
	dir := suiteDir(t)
	checkPython(t)
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	exclude := filepath.Join(here, "exclude.txt")

	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	home, ufsDir := filepath.Join(root, "home"), filepath.Join(root, "ufs")
	if err := os.MkdirAll(ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	jobs := 1
	if s := os.Getenv("ALLUVIUM_S3TESTS_JOBS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("ALLUVIUM_S3TESTS_JOBS=%q: want a number of pytest workers", s)
		}
		jobs = max(n, 1)
	} else if hasXdist() {
		jobs = 2
	}
	var yaml strings.Builder
	yaml.WriteString("security:\n  users:\n")
	for w := 0; w < jobs; w++ {
		for _, u := range usersOf(w) {
			fmt.Fprintf(&yaml, "    %s: %s\n", u.name, u.token)
		}
	}
	conf := filepath.Join(root, "alluvium.yaml")
	if err := os.WriteFile(conf, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testutil.Start(t, "local", bin, []string{"ALLUVIUM_TOKEN=s3tests-cluster-token-0123456789"}, "local", "--home", home, "--ufs", ufsDir,
		"--workers", "1", "--port-base", fmt.Sprint(base), "--config", conf)
	p.WaitLog("ready", 90*time.Second)

	s3conf := filepath.Join(root, "s3tests.conf")
	writeConf(t, s3conf, base+7, usersOf(0))
	for w := 0; w < jobs; w++ {
		writeConf(t, fmt.Sprintf("%s.gw%d", s3conf, w), base+7, usersOf(w))
	}
	xmlOut := filepath.Join(root, "junit.xml")
	report := filepath.Join(root, "excluded.json")
	args := []string{"-m", "pytest", "-p", "no:cacheprovider", "-p", "alluvium_s3tests", "--timeout", "300", "-q", "-rN",
		"--junitxml", xmlOut, "-o", "junit_family=xunit1"}
	if jobs > 1 {
		args = append(args, "-n", strconv.Itoa(jobs))
	}
	if k := os.Getenv("ALLUVIUM_S3TESTS_K"); k != "" {
		args = append(args, "-k", k)
	}
	args = append(args, "s3tests/functional/test_s3.py", "s3tests/functional/test_headers.py")
	pyHome := t.TempDir()
	limit := 20 * time.Minute
	if s := os.Getenv("ALLUVIUM_S3TESTS_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("ALLUVIUM_S3TESTS_TIMEOUT=%q: %v", s, err)
		}
		limit = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=/usr/bin:/bin", "HOME=" + pyHome, "LANG=C.UTF-8",
		"S3TEST_CONF=" + s3conf,
		"PYTHONPATH=" + here,
		// The suite is a shared read-only copy: no __pycache__ in it.
		"PYTHONDONTWRITEBYTECODE=1",
		"ALLUVIUM_S3TESTS_EXCLUDE=" + exclude,
		"ALLUVIUM_S3TESTS_REPORT=" + report,
		"ALLUVIUM_S3TESTS_ALL=" + os.Getenv("ALLUVIUM_S3TESTS_ALL"),
		// No AWS configuration of the machine leaks in.
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
		"NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1",
	}
	out, runErr := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("s3-tests did not finish in %s (ALLUVIUM_S3TESTS_TIMEOUT):\n%s", limit, tail(string(out), 60))
	}
	b, err := os.ReadFile(xmlOut)
	if err != nil {
		t.Fatalf("pytest wrote no report (%v): %v\n%s", runErr, err, tail(string(out), 60))
	}
	var res junit
	if err := xml.Unmarshal(b, &res); err != nil {
		t.Fatalf("pytest's report %s: %v", xmlOut, err)
	}
	excluded := readReport(t, report)

	runAll := os.Getenv("ALLUVIUM_S3TESTS_ALL") == "1"
	var passed, skipped []string
	var failed []junitCase
	var excludedPassed []string
	for _, s := range res.Suites {
		for _, c := range s.Cases {
			rule, isExcluded := excluded.Tests[c.Name]
			switch {
			case c.Failure != nil || c.Error != nil:
				if !isExcluded {
					failed = append(failed, c)
				}
			case c.Skipped != nil:
				skipped = append(skipped, c.Name+": "+c.Skipped.Message)
			default:
				passed = append(passed, c.Name)
				if isExcluded {
					excludedPassed = append(excludedPassed, c.Name+" (excluded by "+rule+")")
				}
			}
		}
	}
	t.Logf("s3-tests: %d passed, %d failed, %d skipped; %d excluded by %d rules of %s",
		len(passed)-len(excludedPassed), len(failed), len(skipped), len(excluded.Tests), len(excluded.Rules), exclude)
	for _, s := range skipped {
		t.Logf("skipped: %s", s)
	}
	if runAll {
		sort.Strings(excludedPassed)
		t.Logf("%d excluded tests pass:\n%s", len(excludedPassed), strings.Join(excludedPassed, "\n"))
	}
	if !runAll && os.Getenv("ALLUVIUM_S3TESTS_K") == "" {
		// A rule that excludes nothing is stale (the suite renamed a test,
		// or a marker went away).
		for _, r := range excluded.Rules {
			if excluded.Matches[r] == 0 {
				t.Errorf("exclude.txt: rule %q matches no test of the suite", r)
			}
		}
	}
	if len(passed)+len(failed) == 0 {
		t.Fatalf("no test ran (pytest: %v):\n%s", runErr, tail(string(out), 60))
	}
	if len(failed) > 0 {
		var lines []string
		for _, c := range failed {
			msg := ""
			if c.Failure != nil {
				msg = c.Failure.Message
			} else {
				msg = "error: " + c.Error.Message
			}
			lines = append(lines, fmt.Sprintf("%s: %s", c.Name, firstLine(msg, 300)))
		}
		t.Errorf("%d s3-tests failed that exclude.txt does not list (fix the gateway, or exclude the test with the reason a user would accept):\n%s",
			len(failed), strings.Join(lines, "\n"))
		t.Logf("pytest output (tail):\n%s", tail(string(out), 150))
	}
}

// excludedReport is what the plugin found: the rules, how many tests each
// matched, and which rule excluded each test.
type excludedReport struct {
	Rules   []string          `json:"rules"`
	Matches map[string]int    `json:"matches"`
	Tests   map[string]string `json:"tests"`
}

func readReport(t *testing.T, path string) excludedReport {
	t.Helper()
	var r excludedReport
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the s3-tests plugin wrote no report of what it excluded: %v", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

func firstLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

func tail(s string, lines int) string {
	var all []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// TestExclusionFile checks exclude.txt's form without running the suite:
// every rule has a reason, and no rule is there twice.
func TestExclusionFile(t *testing.T) {
	f, err := os.Open("exclude.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			t.Errorf("exclude.txt:%d: %q has no reason (a rule is a marker or glob, then why)", n, fields[0])
			continue
		}
		if prev, ok := seen[fields[0]]; ok {
			t.Errorf("exclude.txt:%d: %q is already at line %d", n, fields[0], prev)
		}
		seen[fields[0]] = n
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
