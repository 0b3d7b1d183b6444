package pipespec

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/alluvium/alluvium/api"
)

func TestParseExampleAndRender(t *testing.T) {
	b, err := os.ReadFile("../../configs/pipelines/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := Parse(b)
	if err != nil {
		t.Fatalf("configs/pipelines/example.yaml: %v", err)
	}
	if def.GetName() != "nightly-refresh" || len(def.GetSteps()) != 3 || len(def.GetOnFailure()) != 1 || def.GetRetry().GetAttempts() != 3 ||
		def.GetRetry().GetBackoffMs() != 5000 || def.GetSteps()[1].GetTimeoutMs() != 30*60*1000 {
		t.Fatalf("parsed: %v", def)
	}
	known := func(p string) error {
		if p == "load" || p == "copy" || p == "persist" {
			return nil
		}
		return fmt.Errorf("unknown plan %q", p)
	}
	if _, _, err := Render(def, nil, known); err == nil || !strings.Contains(err.Error(), `param "date" is required`) {
		t.Fatalf("render without date: %v", err)
	}
	steps, params, err := Render(def, map[string]any{"date": "2026-12-06"}, known)
	if err != nil {
		t.Fatal(err)
	}
	if params != `{"date":"2026-12-06","out":"/out"}` {
		t.Fatalf("params %s", params)
	}
	if got := steps[1].GetConfigJson(); got != `{"dst":"/out/2026-12-06","src":"/in/2026-12-06"}` {
		t.Fatalf("copy config %s", got)
	}
	if steps[2].GetRetry().GetAttempts() != 5 || steps[0].GetRetry().GetAttempts() != 3 || !steps[3].GetOnFailure() {
		t.Fatalf("steps: %v", steps)
	}
	// A whole-value parameter keeps its type (a list from a trigger).
	def2 := &api.PipelineDef{Name: "p", Params: []*api.PipelineParam{{Name: "paths", Required: true}},
		Steps: []*api.PipelineStep{{Name: "s", Plan: "load", ConfigJson: `{"paths":"{{.paths}}","first":"{{index .paths 0}}","joined":"{{join .paths \",\"}}"}`}}}
	steps, _, err = Render(def2, map[string]any{"paths": []string{"/a", "/b"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := steps[0].GetConfigJson(); got != `{"first":"/a","joined":"/a,/b","paths":["/a","/b"]}` {
		t.Fatalf("list param: %s", got)
	}
}

func TestParseRefusesBadInputNamingTheStep(t *testing.T) {
	cases := map[string]string{
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: /a}, after: [c]}\n- {name: b, plan: load, config: {path: /a}, after: [a]}\n- {name: c, plan: load, config: {path: /a}, after: [b]}\n": `step "a": dependency cycle "a" → "c" → "b" → "a"`,
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: /a}, after: [zz]}\n":                                                                                                                  `step "a": after "zz": no such step`,
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: \"{{.x\"}}\n":                                                                                                                         `step "a": config.path: bad template`,
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: /a}, timeout: soon}\n":                                                                                                                `step "a": timeout "soon"`,
		"name: p\nstep:\n- {name: a}\n":              `field step not found`,
		"name: p\nsteps:\n- {name: a, plan: load}\n": `step "a": config is missing`,
		"name: p\nsteps:\n- {name: a, plan: load, config: {}}\n- {name: a, plan: load, config: {}}\n":                         `step "a": the name is used twice`,
		"name: p\nsteps:\n- {name: a, config: {}}\n":                                                                          `step "a": no plan`,
		"name: p\nsteps:\n- {name: a, plan: load, config: {}}\nonFailure:\n- {name: b, plan: load, config: {}, after: [a]}\n": `step "b": after "a": a step of steps and a step of onFailure`,
		"name: bad name\nsteps:\n- {name: a, plan: load, config: {}}\n":                                                       `pipeline name "bad name"`,
		"name: p\nsteps: []\n": `no steps`,
		"name: p\nsteps:\n- {name: a, plan: load, config: {}}\n---\nname: q\n": `more than one YAML document`,
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", in, err, want)
		}
	}
	def, err := Parse([]byte("name: p\nparams: [{name: d, default: x}]\nsteps:\n- {name: a, plan: nope, config: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(def, func(p string) error { return fmt.Errorf("unknown plan %q", p) }); err == nil || !strings.Contains(err.Error(), `step "a": unknown plan "nope"`) {
		t.Fatalf("unknown plan: %v", err)
	}
	if _, err := Params(def, map[string]any{"e": "1"}); err == nil || !strings.Contains(err.Error(), `param "e": not declared`) {
		t.Fatalf("undeclared param: %v", err)
	}
}

func TestDelay(t *testing.T) {
	r := &api.PipelineRetry{BackoffMs: 100, MaxBackoffMs: 350, Multiplier: 2}
	for n, want := range map[int]int64{1: 100, 2: 200, 3: 350, 9: 350} {
		if got := Delay(r, n).Milliseconds(); got != want {
			t.Errorf("Delay(%d) = %dms, want %d", n, got, want)
		}
	}
	if Delay(nil, 1).Milliseconds() != 1000 || Attempts(nil) != 1 {
		t.Fatal("defaults")
	}
}

// FuzzParse: any input either parses into a definition that passes Check
// and renders with its defaults (given the required params), or is refused
// with ErrInvalid; never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: /a}}\n",
		"name: p\nparams: [{name: d}]\nsteps:\n- {name: a, plan: load, config: {path: \"/a/{{.d}}\"}}\n- {name: b, plan: copy, after: [a], config: {src: /a, dst: /b}, retry: {attempts: 2, backoff: 1s}}\n",
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: /a}, after: [a]}\n",
		"name: p\nsteps:\n- {name: a, plan: load, config: {path: \"{{.x\"}}\n",
		"name: p\nretry: {multiplier: 0.5}\nsteps:\n- {name: a, plan: load, config: {}}\n",
		"{}", "", "- a\n- b\n", "name: [1]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		def, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if err := Check(def, nil); err != nil {
			t.Fatalf("Parse accepted what Check refuses: %v", err)
		}
		given := map[string]any{}
		for _, p := range def.GetParams() {
			if p.GetRequired() {
				given[p.GetName()] = "v"
			}
		}
		// Rendering may still fail (a template calling a missing key), but
		// only with ErrInvalid.
		if _, _, err := Render(def, given, nil); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("render: %v", err)
		}
	})
}
