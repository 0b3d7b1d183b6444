// Package pipespec owns a pipeline definition outside the job master's
// state: its YAML form (Parse), the checks that need no cluster (Check: step
// names, After edges, cycles, retries, plans known), and the rendering of a
// run's parameters into the steps' configs (Render, text/template). The CLI
// and the SDK parse and check a definition before they send it; the job
// master checks and renders it again at submit, so a definition that
// arrives by another road (REST, a policy) meets the same rules. It is a
// leaf: api and the standard library, plus the YAML decoder.
package pipespec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/alluvium/alluvium/api"
)

// ErrInvalid marks every error of this package: the definition or the
// parameters are wrong, nothing was submitted.
var ErrInvalid = errors.New("invalid pipeline")

type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Limits on a definition, so a bad file cannot make the job master hold a
// huge raft entry.
const (
	MaxSteps       = 256
	MaxParams      = 64
	MaxParamBytes  = 64 << 10
	MaxConfigBytes = 64 << 10
	MaxFileBytes   = 1 << 20
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// file is the YAML form of a definition (configs/pipelines/example.yaml).
type file struct {
	Name        string      `yaml:"name"`
	Description string      `yaml:"description"`
	Params      []fileParam `yaml:"params"`
	Retry       *fileRetry  `yaml:"retry"`
	Parallelism int32       `yaml:"parallelism"`
	FailFast    bool        `yaml:"failFast"`
	Steps       []fileStep  `yaml:"steps"`
	OnFailure   []fileStep  `yaml:"onFailure"`
}

type fileParam struct {
	Name        string  `yaml:"name"`
	Default     *string `yaml:"default"`
	Description string  `yaml:"description"`
}

type fileRetry struct {
	Attempts   int32   `yaml:"attempts"`
	Backoff    string  `yaml:"backoff"`
	MaxBackoff string  `yaml:"maxBackoff"`
	Multiplier float64 `yaml:"multiplier"`
}

type fileStep struct {
	Name    string         `yaml:"name"`
	Plan    string         `yaml:"plan"`
	Config  map[string]any `yaml:"config"`
	After   []string       `yaml:"after"`
	Retry   *fileRetry     `yaml:"retry"`
	Timeout string         `yaml:"timeout"`
}

// Parse reads a definition in its YAML form, strictly: unknown keys,
// durations that do not parse and a second document are errors naming
// where. The result is checked (Check) except for whether its plans exist.
func Parse(b []byte) (*api.PipelineDef, error) {
	if len(b) > MaxFileBytes {
		return nil, invalidf("pipeline definition is %d bytes, at most %d", len(b), MaxFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, invalidf("pipeline definition: %v", err)
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, invalidf("pipeline definition: more than one YAML document")
	}
	def := &api.PipelineDef{Name: f.Name, Description: f.Description, Parallelism: f.Parallelism, FailFast: f.FailFast}
	for _, p := range f.Params {
		pp := &api.PipelineParam{Name: p.Name, Description: p.Description, Required: p.Default == nil}
		if p.Default != nil {
			pp.DefaultValue = *p.Default
		}
		def.Params = append(def.Params, pp)
	}
	var err error
	if def.Retry, err = f.Retry.proto("retry"); err != nil {
		return nil, err
	}
	for _, group := range []struct {
		in  []fileStep
		out *[]*api.PipelineStep
		key string
	}{{f.Steps, &def.Steps, "steps"}, {f.OnFailure, &def.OnFailure, "onFailure"}} {
		for i, s := range group.in {
			where := fmt.Sprintf("%s[%d]", group.key, i)
			if s.Name != "" {
				where = fmt.Sprintf("step %q", s.Name)
			}
			ps := &api.PipelineStep{Name: s.Name, Plan: s.Plan, After: s.After}
			if s.Config == nil {
				return nil, invalidf("pipeline %q: %s: config is missing (the plan's config, e.g. {path: /data})", def.Name, where)
			}
			cj, err := json.Marshal(s.Config)
			if err != nil {
				return nil, invalidf("pipeline %q: %s: config: %v", def.Name, where, err)
			}
			ps.ConfigJson = string(cj)
			if ps.Retry, err = s.Retry.proto(where + ": retry"); err != nil {
				return nil, err
			}
			if s.Timeout != "" {
				d, err := time.ParseDuration(s.Timeout)
				if err != nil || d <= 0 {
					return nil, invalidf("pipeline %q: %s: timeout %q: want a positive duration such as 10m", def.Name, where, s.Timeout)
				}
				ps.TimeoutMs = d.Milliseconds()
			}
			*group.out = append(*group.out, ps)
		}
	}
	if err := Check(def, nil); err != nil {
		return nil, err
	}
	return def, nil
}

func (r *fileRetry) proto(where string) (*api.PipelineRetry, error) {
	if r == nil {
		return nil, nil
	}
	p := &api.PipelineRetry{Attempts: r.Attempts, Multiplier: r.Multiplier}
	for _, d := range []struct {
		s   string
		out *int64
		key string
	}{{r.Backoff, &p.BackoffMs, "backoff"}, {r.MaxBackoff, &p.MaxBackoffMs, "maxBackoff"}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil || v < 0 {
			return nil, invalidf("%s: %s %q: want a duration such as 5s", where, d.key, d.s)
		}
		*d.out = v.Milliseconds()
	}
	return p, nil
}

// checkRetry checks a retry policy's ranges.
func checkRetry(r *api.PipelineRetry) error {
	switch {
	case r == nil:
		return nil
	case r.GetAttempts() < 0 || r.GetAttempts() > 100:
		return fmt.Errorf("attempts %d: want 0..100", r.GetAttempts())
	case r.GetBackoffMs() < 0 || r.GetMaxBackoffMs() < 0:
		return errors.New("backoff: want >= 0")
	case r.GetMultiplier() != 0 && r.GetMultiplier() < 1:
		return fmt.Errorf("multiplier %g: want >= 1", r.GetMultiplier())
	}
	return nil
}

// Check checks a definition without the cluster: a name, step names unique
// and well formed, every After naming a step, no cycle, retries in range,
// configs JSON objects, and (when plan is not nil) every plan known. Every
// error names the step at fault.
func Check(def *api.PipelineDef, plan func(name string) error) error {
	name := def.GetName()
	if !nameRE.MatchString(name) {
		return invalidf("pipeline name %q: want letters, digits, '.', '_' or '-', at most 64", name)
	}
	pf := func(format string, args ...any) error {
		return invalidf("pipeline %q: %s", name, fmt.Sprintf(format, args...))
	}
	if len(def.GetSteps()) == 0 {
		return pf("no steps")
	}
	if n := len(def.GetSteps()) + len(def.GetOnFailure()); n > MaxSteps {
		return pf("%d steps, at most %d", n, MaxSteps)
	}
	if def.GetParallelism() < 0 {
		return pf("parallelism %d: want >= 0", def.GetParallelism())
	}
	if err := checkRetry(def.GetRetry()); err != nil {
		return pf("retry: %v", err)
	}
	if len(def.GetParams()) > MaxParams {
		return pf("%d params, at most %d", len(def.GetParams()), MaxParams)
	}
	seenParam := map[string]bool{}
	for _, p := range def.GetParams() {
		if !paramRE.MatchString(p.GetName()) {
			return pf("param %q: want a name such as date or landed_path (letters, digits, _)", p.GetName())
		}
		if seenParam[p.GetName()] {
			return pf("param %q declared twice", p.GetName())
		}
		seenParam[p.GetName()] = true
	}
	main := map[string]bool{}
	index := map[string]int{}
	all := append(slices.Clone(def.GetSteps()), def.GetOnFailure()...)
	for i, s := range all {
		if !nameRE.MatchString(s.GetName()) {
			return pf("step %d: name %q: want letters, digits, '.', '_' or '-', at most 64", i+1, s.GetName())
		}
		if _, dup := index[s.GetName()]; dup {
			return pf("step %q: the name is used twice", s.GetName())
		}
		index[s.GetName()] = i
		if i < len(def.GetSteps()) {
			main[s.GetName()] = true
		}
		if strings.TrimSpace(s.GetPlan()) == "" {
			return pf("step %q: no plan (e.g. plan: load)", s.GetName())
		}
		if plan != nil {
			if err := plan(s.GetPlan()); err != nil {
				return pf("step %q: %v", s.GetName(), err)
			}
		}
		if len(s.GetConfigJson()) > MaxConfigBytes {
			return pf("step %q: config of %d bytes, at most %d", s.GetName(), len(s.GetConfigJson()), MaxConfigBytes)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(s.GetConfigJson()), &obj); err != nil || obj == nil {
			return pf("step %q: config is not a JSON object", s.GetName())
		}
		if err := checkRetry(s.GetRetry()); err != nil {
			return pf("step %q: retry: %v", s.GetName(), err)
		}
		if s.GetTimeoutMs() < 0 {
			return pf("step %q: timeout %dms: want >= 0", s.GetName(), s.GetTimeoutMs())
		}
		if _, err := parseTemplates(s.GetConfigJson()); err != nil {
			return pf("step %q: %v", s.GetName(), err)
		}
	}
	// Edges: a main step comes after main steps only; an on-failure step
	// after other on-failure steps only (they run once the main steps are
	// over).
	deps := make([][]int, len(all))
	for i, s := range all {
		for _, a := range s.GetAfter() {
			j, ok := index[a]
			if !ok {
				return pf("step %q: after %q: no such step (steps: %s)", s.GetName(), a, strings.Join(stepNames(all), ", "))
			}
			if main[s.GetName()] != main[a] {
				return pf("step %q: after %q: a step of steps and a step of onFailure cannot wait for each other", s.GetName(), a)
			}
			deps[i] = append(deps[i], j)
		}
	}
	if cyc := Cycle(deps); cyc != nil {
		names := make([]string, len(cyc))
		for k, i := range cyc {
			names[k] = fmt.Sprintf("%q", all[i].GetName())
		}
		return pf("step %s: dependency cycle %s (each waits for the next)", names[0], strings.Join(names, " → "))
	}
	return nil
}

var paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

func stepNames(ss []*api.PipelineStep) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.GetName()
	}
	return out
}

// Cycle returns a dependency cycle of the graph deps (deps[i]: the nodes
// i waits for; the first node repeated at the end), or nil; depth-first in
// node order, so the answer is deterministic. The SDK's in-process
// pipelines check their graph with it too.
func Cycle(deps [][]int) []int {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(deps))
	var stack, found []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range deps[i] {
			switch color[d] {
			case grey:
				k := slices.Index(stack, d)
				found = append(slices.Clone(stack[k:]), d)
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range deps {
		if color[i] == white && visit(i) {
			return found
		}
	}
	return nil
}

// Params resolves a run's parameters: the given values, then the
// declared defaults. A given parameter the definition does not declare, or
// a declared one without a default that is not given, is an error. Values
// may be strings or, from a trigger, lists of strings.
func Params(def *api.PipelineDef, given map[string]any) (map[string]any, error) {
	out := map[string]any{}
	declared := map[string]*api.PipelineParam{}
	for _, p := range def.GetParams() {
		declared[p.GetName()] = p
	}
	size := 0
	for _, k := range slices.Sorted(maps.Keys(given)) {
		if declared[k] == nil {
			return nil, invalidf("pipeline %q: param %q: not declared (declared: %s)", def.GetName(), k, strings.Join(slices.Sorted(maps.Keys(declared)), ", "))
		}
		v := given[k]
		switch x := v.(type) {
		case string:
			size += len(x)
		case []string:
			for _, s := range x {
				size += len(s)
			}
		default:
			return nil, invalidf("pipeline %q: param %q: a %T (want a string or a list of strings)", def.GetName(), k, v)
		}
		out[k] = v
	}
	if size > MaxParamBytes {
		return nil, invalidf("pipeline %q: params of %d bytes, at most %d", def.GetName(), size, MaxParamBytes)
	}
	for _, p := range def.GetParams() {
		if _, ok := out[p.GetName()]; ok {
			continue
		}
		if p.GetRequired() {
			return nil, invalidf("pipeline %q: param %q is required (--param %s=VALUE)", def.GetName(), p.GetName(), p.GetName())
		}
		out[p.GetName()] = p.GetDefaultValue()
	}
	return out, nil
}

// wholeRE is a string value that is one parameter and nothing else: it
// takes the parameter's value as it is (a list stays a list).
var wholeRE = regexp.MustCompile(`^\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$`)

// templateFuncs are what a config's templates may call besides the
// built-ins: join a list, the directory or base of a path.
var templateFuncs = template.FuncMap{
	"join": strings.Join,
	"dir": func(p string) string {
		if i := strings.LastIndex(p, "/"); i > 0 {
			return p[:i]
		}
		return "/"
	},
	"base": func(p string) string { return p[strings.LastIndex(p, "/")+1:] },
}

// parseTemplates parses every string of a config as a template, so a bad
// template is refused before any parameter is known.
func parseTemplates(configJSON string) (any, error) {
	var v any
	if err := json.Unmarshal([]byte(configJSON), &v); err != nil {
		return nil, err
	}
	err := walkStrings(v, "config", func(where, s string) error {
		if !strings.Contains(s, "{{") {
			return nil
		}
		if _, err := template.New(where).Funcs(templateFuncs).Option("missingkey=error").Parse(s); err != nil {
			return fmt.Errorf("%s: bad template: %v", where, err)
		}
		return nil
	})
	return v, err
}

func walkStrings(v any, where string, f func(where, s string) error) error {
	switch x := v.(type) {
	case string:
		return f(where, x)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if err := walkStrings(x[k], where+"."+k, f); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := walkStrings(e, fmt.Sprintf("%s[%d]", where, i), f); err != nil {
				return err
			}
		}
	}
	return nil
}

// render substitutes params into one config.
func render(configJSON string, params map[string]any) (string, error) {
	var v any
	if err := json.Unmarshal([]byte(configJSON), &v); err != nil {
		return "", err
	}
	var rerr error
	var sub func(v any, where string) any
	sub = func(v any, where string) any {
		if rerr != nil {
			return v
		}
		switch x := v.(type) {
		case string:
			if !strings.Contains(x, "{{") {
				return x
			}
			if m := wholeRE.FindStringSubmatch(x); m != nil {
				if p, ok := params[m[1]]; ok {
					return p
				}
			}
			t, err := template.New(where).Funcs(templateFuncs).Option("missingkey=error").Parse(x)
			if err != nil {
				rerr = fmt.Errorf("%s: bad template: %v", where, err)
				return x
			}
			var b strings.Builder
			if err := t.Execute(&b, params); err != nil {
				rerr = fmt.Errorf("%s: %v", where, err)
				return x
			}
			return b.String()
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				x[k] = sub(x[k], where+"."+k)
			}
			return x
		case []any:
			for i := range x {
				x[i] = sub(x[i], fmt.Sprintf("%s[%d]", where, i))
			}
			return x
		}
		return v
	}
	v = sub(v, "config")
	if rerr != nil {
		return "", rerr
	}
	out, err := json.Marshal(v)
	return string(out), err
}

// Render checks def (plan: see Check), resolves the parameters and returns
// the run's steps — the steps, then the on-failure steps — PENDING, with
// their configs rendered and their retry resolved, and the parameters as
// a JSON object.
func Render(def *api.PipelineDef, given map[string]any, plan func(name string) error) ([]*api.PipelineStepState, string, error) {
	if err := Check(def, plan); err != nil {
		return nil, "", err
	}
	params, err := Params(def, given)
	if err != nil {
		return nil, "", err
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, "", invalidf("pipeline %q: params: %v", def.GetName(), err)
	}
	var out []*api.PipelineStepState
	add := func(s *api.PipelineStep, onFailure bool) error {
		cfg, err := render(s.GetConfigJson(), params)
		if err != nil {
			return invalidf("pipeline %q: step %q: %v", def.GetName(), s.GetName(), err)
		}
		r := s.GetRetry()
		if r == nil {
			r = def.GetRetry()
		}
		out = append(out, &api.PipelineStepState{
			Name: s.GetName(), Status: api.PipelineStepState_PENDING, Plan: s.GetPlan(), ConfigJson: cfg,
			After: s.GetAfter(), OnFailure: onFailure, Retry: r, TimeoutMs: s.GetTimeoutMs(),
		})
		return nil
	}
	for _, s := range def.GetSteps() {
		if err := add(s, false); err != nil {
			return nil, "", err
		}
	}
	for _, s := range def.GetOnFailure() {
		if err := add(s, true); err != nil {
			return nil, "", err
		}
	}
	return out, string(pj), nil
}

// Delay is the wait before retry n (1: the first retry) under r (see
// Backoff).
func Delay(r *api.PipelineRetry, n int) time.Duration {
	return Backoff(time.Duration(r.GetBackoffMs())*time.Millisecond, time.Duration(r.GetMaxBackoffMs())*time.Millisecond, r.GetMultiplier(), n)
}

// Backoff is the wait before retry n (1: the first retry): first (default
// 1 s), multiplier (default 2) times longer each time, at most maxWait
// (default 1 min). The SDK's in-process pipelines and the job master's
// submitted ones both wait so.
func Backoff(first, maxWait time.Duration, multiplier float64, n int) time.Duration {
	if first == 0 {
		first = time.Second
	}
	if maxWait == 0 {
		maxWait = time.Minute
	}
	if multiplier == 0 {
		multiplier = 2
	}
	f := float64(first)
	for i := 1; i < n && f < float64(maxWait); i++ {
		f *= multiplier
	}
	return min(time.Duration(f), maxWait)
}

// Attempts is how often a step under r is tried in all (at least once).
func Attempts(r *api.PipelineRetry) int32 { return max(r.GetAttempts(), 1) }
