package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/spf13/viper"
)

// Unknown keys. A key the program does not know is a typo or a key of
// another role (a proxy given proxy.master, which is client.master), and
// ignoring it runs the process with a default the user meant to change.
// So a config file or an ALLUVIUM_* variable naming no key stops the
// process at start, naming the key and the nearest one that exists.
//
// The known keys are Default()'s: a key added there is known everywhere at
// once. A key whose default is a map (security.users, fsmaster.ufs-options,
// ...) takes any key under it, since those are user names or mount options.

// EnvPrefix starts every environment variable Alluvium reads.
const EnvPrefix = "ALLUVIUM_"

// OtherEnv lists the ALLUVIUM_* variables that are not configuration keys,
// with who reads them. Every ALLUVIUM_* name used anywhere in the repository
// is a key's variable or listed here (a test checks it).
var OtherEnv = map[string]string{
	"ALLUVIUM_MASTER":      "FS master address(es) of the CLI and SDK (client.master), written by `alluvium local` to <home>/env",
	"ALLUVIUM_JOB_MASTER":  "job master addresses of the CLI and SDK (client.job-master), written to <home>/env",
	"ALLUVIUM_TOKEN":       "the cluster token of the CLI and SDK (security.token), written to <home>/env",
	"ALLUVIUM_PROXY":       "REST URL of the proxy, written to <home>/env for scripts and REST clients",
	"ALLUVIUM_S3":          "S3 endpoint URL of the proxy, written to <home>/env for S3 clients",
	"ALLUVIUM_UI":          "URL of the web console, written to <home>/env",
	"ALLUVIUM_PATH":        "set by the exec plan for its command: the Alluvium path of the file it gets",
	"ALLUVIUM_JOB_ID":      "set by the exec plan for its command: the job's id",
	"ALLUVIUM_TASK_ID":     "set by the exec plan for its command: the task's id",
	"ALLUVIUM_PLAN_PLUGIN": "the go-plugin handshake a job master or job worker gives the plan plugins it starts (sdk/planplugin)",
	"ALLUVIUM_BIN":         "tests: the alluvium binary the end-to-end tests start (make test sets it)",
	"ALLUVIUM_TOOLS":       "tests and .ci/run: the tool cache (MinIO, helm); default ~/.cache/alluvium-tools",
}

// OtherEnvPrefixes are families of ALLUVIUM_* variables that are not
// configuration keys: hooks and switches of the test suites, which the
// test harness passes down to the processes it starts.
var OtherEnvPrefixes = map[string]string{
	"ALLUVIUM_TEST_":    "test hooks read by the servers under test (e.g. ALLUVIUM_TEST_CHECKPOINT_STALL) or by test helpers",
	"ALLUVIUM_S3TESTS_": "switches of the ceph/s3-tests run (tests/s3tests)",
	"ALLUVIUM_SCALE_":   "sizes and directories of the scale run (tests/scale, make bench-scale)",
	"ALLUVIUM_BENCH_":   "switches of the benchmarks (tests/bench), e.g. ALLUVIUM_BENCH_PROFILES: a dir for CPU profiles",
}

// keySet is what Default() says the configuration holds.
type keySet struct {
	keys     map[string]bool // every key
	maps     []string        // keys whose values are maps: anything under them is theirs
	sections map[string]bool // proper prefixes of keys (fsmaster, fsmaster.journal)
}

func knownKeys() *keySet {
	s := &keySet{keys: map[string]bool{}, sections: map[string]bool{}}
	for k, v := range Default() {
		s.keys[k] = true
		if v != nil && reflect.TypeOf(v).Kind() == reflect.Map {
			s.maps = append(s.maps, k)
		}
		for i := strings.LastIndexByte(k, '.'); i > 0; i = strings.LastIndexByte(k[:i], '.') {
			s.sections[k[:i]] = true
		}
	}
	sort.Strings(s.maps)
	return s
}

// known reports whether key (lower case, dotted, as viper flattens a file)
// is a key, a section holding keys, or an entry of a map-valued key.
func (s *keySet) known(key string) bool {
	if s.keys[key] || s.sections[key] {
		return true
	}
	for _, m := range s.maps {
		if strings.HasPrefix(key, m+".") {
			return true
		}
	}
	return false
}

func (s *keySet) sorted() []string {
	out := make([]string, 0, len(s.keys))
	for k := range s.keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// EnvName is the environment variable of a key: ALLUVIUM_ and the key in
// upper case with dots and dashes as underscores.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// checkFile refuses the keys of a config file that are not configuration
// keys. It reads the file alone, so the defaults do not hide its keys.
func checkFile(path string) error {
	fv := viper.New()
	fv.SetConfigFile(path)
	if err := fv.ReadInConfig(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	s := knownKeys()
	var bad []string
	for _, k := range fv.AllKeys() {
		if !s.known(k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	all := s.sorted()
	msgs := make([]string, len(bad))
	for i, k := range bad {
		msgs[i] = k + didYouMean(suggest(k, all, "."), nil)
	}
	return fmt.Errorf("config %s: unknown key%s %s; every key is listed in configs/README.md", path, plural(len(bad)), strings.Join(msgs, ", "))
}

// CheckEnv refuses ALLUVIUM_* variables of environ (NAME=value entries, as
// os.Environ returns) that are neither a key's variable nor in OtherEnv or
// OtherEnvPrefixes.
func CheckEnv(environ []string) error {
	s := knownKeys()
	byEnv := map[string]string{} // variable -> key
	for k := range s.keys {
		byEnv[EnvName(k)] = k
	}
	var bad []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || byEnv[name] != "" || OtherEnv[name] != "" {
			continue
		}
		other := false
		for p := range OtherEnvPrefixes {
			other = other || strings.HasPrefix(name, p)
		}
		if !other {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	cands := make([]string, 0, len(byEnv)+len(OtherEnv))
	for name := range byEnv {
		cands = append(cands, name)
	}
	for name := range OtherEnv {
		cands = append(cands, name)
	}
	sort.Strings(cands)
	msgs := make([]string, len(bad))
	for i, name := range bad {
		// Compare without the prefix, so its section is the first word.
		var near []string
		for _, n := range suggest(strings.TrimPrefix(name, EnvPrefix), trimAll(cands, EnvPrefix), "_") {
			near = append(near, EnvPrefix+n)
		}
		msgs[i] = name + didYouMean(near, byEnv)
	}
	return fmt.Errorf("config: unknown environment variable%s %s; ALLUVIUM_* variables set configuration keys (ALLUVIUM_FSMASTER_JOURNAL_DIR is fsmaster.journal.dir), every key is listed in configs/README.md", plural(len(bad)), strings.Join(msgs, ", "))
}

func trimAll(ss []string, prefix string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimPrefix(s, prefix)
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// didYouMean prints suggestions; keyOf names the key behind a variable.
func didYouMean(near []string, keyOf map[string]string) string {
	if len(near) == 0 {
		return ""
	}
	parts := make([]string, len(near))
	for i, n := range near {
		parts[i] = n
		if k := keyOf[n]; k != "" {
			parts[i] += " (" + k + ")"
		}
	}
	return " (did you mean " + orList(parts) + "?)"
}

func orList(ss []string) string {
	if len(ss) == 1 {
		return ss[0]
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " or " + ss[len(ss)-1]
}

// readsSection says, for a role's section, the section whose keys that role
// reads too, so a key of it written under the role's own name is most
// likely meant there: a proxy finds the cluster with client.master, a
// worker's job role is configured under jobworker and the other way round.
var readsSection = map[string]string{
	"proxy":     "client",
	"worker":    "jobworker",
	"jobworker": "worker",
}

// suggest returns the keys of cands (sorted) nearest to bad, at most three
// and none when nothing is near. sep separates a key's words ("." in files;
// "_" in variables, where the first word is still the section).
//  1. The same key under another section (proxy.master: client.master);
//     with several, the section the role reads (readsSection), else all.
//  2. A key a few edits away (fsmaster.journal.dri: fsmaster.journal.dir).
//  3. The longest key that starts bad (an entry of a map, a sub-key of a
//     value): that key.
//  4. Keys whose last word is bad's last word, when there are few.
func suggest(bad string, cands []string, sep string) []string {
	if section, rest, ok := strings.Cut(bad, sep); ok {
		var same []string
		for _, c := range cands {
			if cs, crest, ok := strings.Cut(c, sep); ok && crest == rest && cs != section {
				if strings.EqualFold(cs, readsSection[strings.ToLower(section)]) {
					return []string{c}
				}
				same = append(same, c)
			}
		}
		if len(same) > 0 && len(same) <= 3 {
			return same
		}
	}
	best, bestD := []string(nil), max(1, len(bad)/4)+1
	for _, c := range cands {
		switch d := editDistance(bad, c); {
		case d < bestD:
			best, bestD = []string{c}, d
		case d == bestD && best != nil:
			best = append(best, c)
		}
	}
	if len(best) > 0 && len(best) <= 3 {
		return best
	}
	prefix := ""
	for _, c := range cands {
		if strings.HasPrefix(bad, c+sep) && len(c) > len(prefix) {
			prefix = c
		}
	}
	if prefix != "" {
		return []string{prefix}
	}
	leaf := bad[strings.LastIndex(bad, sep)+1:]
	var same []string
	for _, c := range cands {
		if c == leaf || strings.HasSuffix(c, sep+leaf) {
			same = append(same, c)
		}
	}
	if len(same) > 0 && len(same) <= 3 {
		return same
	}
	return nil
}

// editDistance is the Levenshtein distance of a and b (bytes: keys are
// ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
