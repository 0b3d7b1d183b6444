package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// policyAddCmd returns `policy add` inside a root, as the user gets it.
func policyAddCmd(t *testing.T) *cobra.Command {
	t.Helper()
	root := newRootCmd()
	c, _, err := root.Find([]string{"policy", "add"})
	if err != nil || c.Name() != "add" {
		t.Fatalf("policy add: %v", err)
	}
	return c
}

func TestSplitPolicyArgs(t *testing.T) {
	c := policyAddCmd(t)
	for _, tc := range []struct {
		args, own, words string
	}{
		{"hot --cron */10_*_*_*_*_* load /hot --replication 2", "hot --cron */10_*_*_*_*_*", "load /hot --replication 2"},
		{"--cron @hourly hot persist /out", "--cron @hourly hot", "persist /out"},
		{"--job-master a:1 hot --cron=@daily --overlap queue --catch-up=false load /x", "--job-master a:1 hot --cron=@daily --overlap queue --catch-up=false", "load /x"},
		{"hot --paused --cron @daily load /x --verify", "hot --paused --cron @daily", "load /x --verify"},
		{"hot --cron @daily", "hot --cron @daily", ""},
		{"--help", "--help", ""},
	} {
		args := strings.Fields(strings.ReplaceAll(tc.args, "_", " "))
		args = fix(args)
		own, words := splitPolicyArgs(c, args)
		if strings.Join(own, "|") != strings.Join(fix(strings.Fields(strings.ReplaceAll(tc.own, "_", " "))), "|") || strings.Join(words, " ") != tc.words {
			t.Errorf("%q: own %q words %q", tc.args, own, words)
		}
	}
}

// fix rejoins a cron spec split by Fields ("*/10 * * ..." is one argument).
func fix(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "*/10") {
			out = append(out, strings.Join(args[i:i+6], " "))
			i += 5
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// The job words go through the job submit commands: the plan's flags and
// global flags among them work as they do for a submit.
func TestPolicyJobWords(t *testing.T) {
	c := policyAddCmd(t)
	c.SetContext(context.Background())
	var out bytes.Buffer
	c.SetOut(&out)
	job, err := policyJobWords(c, "hot", []string{"load", "/hot", "--replication", "2", "--verify", "--job-master", "h:1"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(job.config), &cfg); err != nil {
		t.Fatal(err)
	}
	if job.plan != "load" || cfg["path"] != "/hot" || cfg["replication"] != 2.0 || cfg["verify"] != true || job.global["job-master"] != "h:1" {
		t.Fatalf("job %+v config %v", job, cfg)
	}
	// Any plan with --config.
	job, err = policyJobWords(c, "x", []string{"persist", "--config", `{"path":"/out"}`})
	if err != nil || job.plan != "persist" || job.config != `{"path":"/out"}` {
		t.Fatalf("--config: %+v %v", job, err)
	}
	// Bad words are usage errors naming what is wrong.
	for _, words := range [][]string{
		{"bogus", "/x"},
		{"load"},
		{"load", "/x", "--replication", "0"},
		{"load", "/x", "--wait"},
		{"load", "/x", "--request-id", "r"},
		{"load", "/x", "--nope"},
		{"persist", "--config", "{nope"},
	} {
		_, err := policyJobWords(c, "x", words)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", words, err)
		}
	}
	// --help among the job words prints the plan's help and adds nothing.
	out.Reset()
	job, err = policyJobWords(c, "x", []string{"load", "--help"})
	if err != nil || job != nil || !strings.Contains(out.String(), "--replication") {
		t.Fatalf("load --help: %v %v\n%s", job, err, out.String())
	}
}

func FuzzSplitPolicyArgs(f *testing.F) {
	for _, s := range []string{
		"hot --cron @hourly load /hot --replication 2",
		"--cron=x -h hot load",
		"-- hot load",
		"hot --cron",
		"- hot --job-master --cron load",
	} {
		f.Add(s)
	}
	c := newRootCmd()
	add, _, _ := c.Find([]string{"policy", "add"})
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Fields(s)
		own, words := splitPolicyArgs(add, args)
		if !slices.Equal(append(slices.Clone(own), words...), args) {
			t.Fatalf("split %q into %q + %q", args, own, words)
		}
		if len(words) > 0 && strings.HasPrefix(words[0], "-") && words[0] != "-" && words[0] != "--" {
			t.Fatalf("the job words start with a flag: %q", words)
		}
	})
}
