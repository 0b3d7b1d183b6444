package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// cliCommands lists every leaf command of the CLI as its words ("fs cat",
// "job raft add-peer"), from the binary's own --help: a command added to
// the CLI shows up here whether or not anyone remembered this test.
func cliCommands(t *testing.T, bin string, path ...string) []string {
	t.Helper()
	out, _, code := testutil.Run(t, bin, nil, append(path, "--help")...)
	if code != 0 {
		t.Fatalf("alluvium %s --help: exit %d", strings.Join(path, " "), code)
	}
	_, list, found := strings.Cut(out, "Available Commands:")
	if !found {
		return []string{strings.Join(path, " ")}
	}
	var cmds []string
	for _, line := range strings.Split(list, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(line, "  ") {
			break
		}
		if f[0] == "help" || f[0] == "completion" {
			continue
		}
		cmds = append(cmds, cliCommands(t, bin, append(append([]string(nil), path...), f[0])...)...)
	}
	return cmds
}

// cliAttack is one CLI run by alice. Refused: exit 1 with one line on
// stderr; or, for a listing (shows), exit 0 showing none of hide.
type cliAttack struct {
	args  []string
	shows bool
	hide  []string
}

// TestCLIAndSDKAttacker plays alice against bob through the CLI (every
// command, found from --help, must be attacked or exempted with a reason)
// and the Go SDK (every exported method of Client, Jobs and Policies, found
// by reflection, the same), and with raw gRPC calls to the block worker
// that skip the SDK's own checks. Each attack must be refused and leak
// nothing; bob's world must be as it was; bob himself is not refused.
func TestCLIAndSDKAttacker(t *testing.T) {
	c := startLocal(t, usersYAML)
	ctx := context.Background()
	v := setupVictim(t, c)
	if _, err := v.root.Mount(ctx, "/users/bob/mnt", "file://"+t.TempDir(), sdk.MountOptions{}); err != nil {
		t.Fatal(err)
	}
	c.must(t, bobToken, "policy", "add", "bob-yearly", "--cron", "0 0 1 1 *", "load", bobSecDir)
	c.must(t, bobToken, "fs", "pin", bobPrivate)
	// bob's multipart upload in flight, with one part.
	bobUp, err := v.bob.CreateUpload(ctx, "/users/bob/upload.bin", sdk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bobPart, err := v.bob.WritePart(ctx, bobUp, 1, strings.NewReader("bob's part"), int64(len("bob's part")), nil)
	if err != nil {
		t.Fatal(err)
	}
	// bob's pipeline run, kept by the job master (one step, still
	// running: a load of his private tree at a trickle).
	bobPipes, err := v.bob.Pipelines()
	if err != nil {
		t.Fatal(err)
	}
	bobRun, err := bobPipes.Submit(ctx, &sdk.PipelineDef{Name: "bob-pipe-secret", Steps: []*api.PipelineStep{
		{Name: "warm", Plan: "load", ConfigJson: fmt.Sprintf(`{"path": %q, "bandwidth": 1024}`, bobSecDir)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprint(bobRun.GetId())
	stealPipe := filepath.Join(t.TempDir(), "steal.yaml")
	if err := os.WriteFile(stealPipe, []byte(fmt.Sprintf("name: steal\nsteps:\n  - name: grab\n    plan: copy\n    config: {src: %q, dst: /users/alice/loot}\n", bobSecDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := v.snapshot(t)
	local := filepath.Join(t.TempDir(), "local")
	if err := os.WriteFile(local, []byte("alice's bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	loot := filepath.Join(t.TempDir(), "loot")
	job := fmt.Sprint(v.job)
	bobsJobs := []string{"/users/bob", "bob-yearly", " bob "}

	exempt := map[string]string{
		"format": "a server command: runs on the cluster's own host", "fsmaster": "a server", "jobmaster": "a server",
		"local": "a server", "proxy": "a server", "secondary": "a server", "worker": "a server", "console": "a server",
		"job leader":                  "shows the job masters' raft group: cluster facts, no user data",
		"job raft list-peers":         "the same as job leader",
		"fsadmin report":              "journal, capacity and workers: cluster facts, no user data",
		"fsadmin journal convert":     "offline: rewrites a stopped FS master's journal directory on its own host, no cluster call",
		"fsadmin journal quorum info": "the FS masters' raft group: cluster facts, no user data",
		"pipeline submit":             "accepted: a step's paths may be made by the steps before it, so access is checked as each step's job is submitted, as the submitter — attacked below (the run fails naming the permission, nothing copied)",
		"job plans":                   "the plans the cluster runs (names, versions, how many workers have them): cluster facts, no user data",
		"sim workers":                 "a load generator for the cluster's operator: its simulated workers make the worker-only calls, which are system-only (the cluster token), and touch no user's files",
	}
	attacks := map[string][]cliAttack{
		"fs cat":             {{args: []string{bobPrivate}}, {args: []string{bobSecFile}}},
		"fs chmod":           {{args: []string{"777", bobPrivate}}, {args: []string{"-R", "777", bobSecDir}}},
		"fs chown":           {{args: []string{"alice", bobPrivate}}, {args: []string{"alice:alice", bobSecDir}}},
		"fs distributedCp":   {{args: []string{bobSecDir, "/users/alice/loot"}}, {args: []string{bobPrivate, "/users/alice/loot2"}}},
		"fs distributedLoad": {{args: []string{bobSecDir}}},
		"fs distributedMv":   {{args: []string{bobPrivate, "/users/alice/loot"}}, {args: []string{bobSecDir, "/users/alice/sec"}}},
		"fs free":            {{args: []string{bobPrivate}}, {args: []string{bobSecDir}}},
		"fs get":             {{args: []string{bobPrivate, loot}}, {args: []string{bobSecDir, loot}}},
		"fs location":        {{args: []string{bobSecFile}}},
		"fs ls":              {{args: []string{bobSecDir}}, {args: []string{"-R", "/users"}}},
		"fs mkdir":           {{args: []string{bobSecDir + "/x"}}, {args: []string{"-p", "/users/bob/x/y"}}},
		// The mount table is everyone's to read (as Alluxio's): paths and
		// URIs, not the options, which may hold UFS keys.
		"fs mount":                      {{args: []string{bobSecDir + "/m", "file://" + t.TempDir()}}, {args: []string{}, shows: true}},
		"fs mv":                         {{args: []string{bobPrivate, "/users/alice/stolen"}}, {args: []string{bobSecFile, "/users/alice/stolen"}}},
		"fs persist":                    {{args: []string{bobSecDir}}},
		"fs pin":                        {{args: []string{bobSecFile}}},
		"fs put":                        {{args: []string{local, bobSecDir + "/planted"}}, {args: []string{"-f", local, bobPrivate}}, {args: []string{local, "/users/bob/planted"}}},
		"fs rm":                         {{args: []string{bobPrivate}}, {args: []string{"-r", bobSecDir}}, {args: []string{"-r", "/users/bob"}}},
		"fs setReplication":             {{args: []string{bobSecDir, "--replication", "2"}}},
		"fs setTtl":                     {{args: []string{bobPrivate, "1"}}, {args: []string{bobSecDir, "1s"}}},
		"fs stat":                       {{args: []string{bobSecFile}}, {args: []string{bobSecDir + "/nope"}}},
		"fs unmount":                    {{args: []string{"/users/bob/mnt"}}},
		"fs unpin":                      {{args: []string{bobPrivate}}},
		"fs unsetTtl":                   {{args: []string{bobPrivate}}},
		"fsadmin checkpoint":            {{args: []string{}}},
		"fsadmin journal quorum add":    {{args: []string{"m9", "127.0.0.1:1", "127.0.0.1:2"}}},
		"fsadmin journal quorum remove": {{args: []string{"m0"}}},
		"job cancel":                    {{args: []string{job}}},
		"job ls":                        {{args: []string{}, shows: true, hide: bobsJobs}, {args: []string{"--output", "json"}, shows: true, hide: bobsJobs}},
		"job stat":                      {{args: []string{job}}, {args: []string{"-v", job}}},
		"job wait":                      {{args: []string{job}}},
		"job workers":                   {{args: []string{}, shows: true, hide: bobsJobs}},
		"job raft add-peer":             {{args: []string{"x", "127.0.0.1:1", "127.0.0.1:2"}}},
		"job raft remove-peer":          {{args: []string{"localhost:1"}}},
		"job submit copy":               {{args: []string{bobSecDir, "/users/alice/loot"}}},
		"job submit load":               {{args: []string{bobSecDir}}},
		// cat is allowed (usersYAML): what stops alice is read permission.
		"job submit exec":      {{args: []string{bobSecDir, "--", "cat"}}, {args: []string{bobPrivate, "--input", "stdin", "--", "cat"}}},
		"job submit move":      {{args: []string{bobPrivate, "/users/alice/loot"}}},
		"job submit persist":   {{args: []string{bobSecDir}}},
		"job submit noop":      {{args: []string{bobSecDir}}},
		"job submit sync":      {{args: []string{bobSecDir, "/users/alice/loot"}}, {args: []string{"/users/alice", bobSecDir}}, {args: []string{"--dry-run", bobSecDir, "/users/alice/loot"}}},
		"job submit replicate": {{args: []string{bobPrivate, "--replication", "1"}}},
		"pipeline cancel":      {{args: []string{run}}},
		"pipeline ls":          {{args: []string{}, shows: true, hide: []string{"bob-pipe-secret"}}, {args: []string{"--output", "json"}, shows: true, hide: []string{"bob-pipe-secret"}}},
		"pipeline stat":        {{args: []string{run}}},
		"pipeline wait":        {{args: []string{run}}},
		"policy add":           {{args: []string{"steal", "--cron", "@daily", "load", bobSecDir}}, {args: []string{"bob-yearly", "--cron", "@daily", "load", "/users/alice"}}},
		"policy ls":            {{args: []string{}, shows: true, hide: bobsJobs}},
		"policy pause":         {{args: []string{"bob-yearly"}}},
		"policy resume":        {{args: []string{"bob-yearly"}}},
		"policy rm":            {{args: []string{"bob-yearly"}}},
		"policy run-now":       {{args: []string{"bob-yearly"}}},
	}
	secrets := []string{secretPrivate, secretSec, secretName, "bob-yearly", "bob-pipe-secret"}
	cmds := cliCommands(t, c.bin)
	sort.Strings(cmds)
	total, refused := 0, 0
	for _, cmd := range cmds {
		as, ok := attacks[cmd]
		if _, ex := exempt[cmd]; ex {
			continue
		}
		if !ok {
			t.Errorf("CLI command %q has no attack in this table: add one (as alice against bob's files or jobs), or exempt it with a reason", cmd)
			continue
		}
		delete(attacks, cmd)
		for _, a := range as {
			total++
			args := append(strings.Fields(cmd), a.args...)
			out, errOut, code := c.cli(t, aliceToken, args...)
			line := strings.TrimSpace(errOut)
			leak := ""
			for _, s := range secrets {
				// Alice's own arguments may come back in an error; bob's
				// secrets, or names she did not send, may not.
				if strings.Contains(out+errOut, s) && !strings.Contains(strings.Join(args, " "), s) {
					leak = s
				}
			}
			switch {
			case a.shows && code != 0:
				t.Errorf("alice: alluvium %s: exit %d %s; want a listing", strings.Join(args, " "), code, errOut)
			case !a.shows && (code != 1 || strings.Count(line, "\n") != 0):
				t.Errorf("alice: alluvium %s: exit %d, stdout %q, stderr %q; want refused (exit 1, one line)", strings.Join(args, " "), code, out, errOut)
			case leak != "":
				t.Errorf("alice: alluvium %s leaks %q: %s%s", strings.Join(args, " "), leak, out, errOut)
			case slices.ContainsFunc(a.hide, func(h string) bool { return strings.Contains(out, h) }):
				t.Errorf("alice: alluvium %s shows bob's: %s", strings.Join(args, " "), out)
			default:
				refused++
			}
		}
	}
	for cmd := range attacks {
		t.Errorf("the table attacks %q, which the CLI no longer has", cmd)
	}
	// alice's pipeline that copies bob's directory: accepted, and its step
	// refused when its job is submitted as alice.
	total++
	out, errOut, code := c.cli(t, aliceToken, "pipeline", "submit", stealPipe, "--wait")
	if code == 0 || !strings.Contains(out+errOut, "permission denied") || strings.Contains(out+errOut, secretName) {
		t.Errorf("alice: alluvium pipeline submit --wait of a copy of bob's directory: exit %d, stdout %q, stderr %q; want the run failed naming the permission", code, out, errOut)
	} else if _, err := v.root.Stat(ctx, "/users/alice/loot"); err == nil {
		t.Errorf("alice's pipeline copied bob's directory to /users/alice/loot")
	} else {
		refused++
	}
	if r, err := bobPipes.Get(ctx, bobRun.GetId()); err != nil || r.GetStatus() == api.PipelineRun_CANCELED {
		t.Errorf("bob's pipeline run after alice's attacks: %v %v", r.GetStatus(), err)
	}
	if b, err := os.ReadFile(loot); err == nil {
		t.Errorf("fs get as alice wrote %q locally", b)
	}

	// The SDK, method by method, and raw gRPC below it.
	alice := c.client(t, aliceToken)
	aj := jobs(t, alice)
	ap, err := alice.Policies()
	if err != nil {
		t.Fatal(err)
	}
	bobInfo, err := v.bob.Stat(ctx, bobSecFile)
	if err != nil {
		t.Fatal(err)
	}
	drain := func(seq func(func(*sdk.FileInfo, error) bool)) error {
		for fi, err := range seq {
			if err != nil {
				return err
			}
			if strings.HasPrefix(fi.GetPath(), bobSecDir) {
				return fmt.Errorf("listed %s", fi.GetPath())
			}
		}
		return errors.New("listed without error")
	}
	read := func(p string) error {
		r, err := alice.Open(ctx, p, sdk.OpenOptions{})
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		return fmt.Errorf("read %d bytes (%v)", len(b), err)
	}
	sdkExempt := map[string]string{
		"Client.Close": "local", "Client.Jobs": "local: a handle", "Client.Policies": "local: a handle",
		"Client.Pipelines": "local: a handle", "Jobs.Plans": "the plans the job masters run: cluster facts, no user data",
		"Client.MasterInfo": "cluster facts", "Client.Workers": "cluster facts",
		"Client.Mounts":      "the mount table, options redacted for non-superusers (see below)",
		"Jobs.Leader":        "cluster facts",
		"Client.Masters":     "the FS masters' raft group: cluster facts",
		"Client.MasterGroup": "the same",
	}
	denied, notFound := codes.PermissionDenied, codes.NotFound
	type sdkAttack struct {
		name string
		want codes.Code
		f    func() error
	}
	sdkAttacks := map[string][]sdkAttack{
		"Client.Checkpoint":   {{"checkpoint", denied, func() error { _, err := alice.Checkpoint(ctx); return err }}},
		"Client.AddMaster":    {{"add an FS master", denied, func() error { return alice.AddMaster(ctx, "m9", "127.0.0.1:1", "127.0.0.1:2") }}},
		"Client.RemoveMaster": {{"remove an FS master", denied, func() error { return alice.RemoveMaster(ctx, "m0") }}},
		"Client.Create": {
			{"create in bob's dir", denied, func() error { _, err := alice.Create(ctx, bobSecDir+"/x", sdk.CreateOptions{}); return err }},
			{"overwrite bob's file", denied, func() error {
				_, err := alice.Create(ctx, bobPrivate, sdk.CreateOptions{Overwrite: true})
				return err
			}},
		},
		"Client.Delete": {
			{"rm bob's file", denied, func() error { return alice.Delete(ctx, bobPrivate, sdk.DeleteOptions{}) }},
			{"rm bob's file by id", denied, func() error {
				return alice.Delete(ctx, bobSecFile, sdk.DeleteOptions{FileID: bobInfo.GetFileId(), AlluviumOnly: true})
			}},
		},
		"Client.Free":     {{"free bob's dir", denied, func() error { _, err := alice.Free(ctx, bobSecDir, sdk.FreeOptions{Recursive: true}); return err }}},
		"Client.List":     {{"ls -R bob's home", denied, func() error { return drain(alice.List(ctx, "/users/bob", sdk.ListOptions{Recursive: true})) }}},
		"Client.ListFrom": {{"ls bob's dir", denied, func() error { return drain(alice.ListFrom(ctx, bobSecDir, sdk.ListFromOptions{})) }}},
		"Client.Mkdir":    {{"mkdir in bob's dir", denied, func() error { _, err := alice.Mkdir(ctx, bobSecDir+"/d", sdk.MkdirOptions{}); return err }}},
		"Client.Mount": {{"mount", denied, func() error {
			_, err := alice.Mount(ctx, "/users/alice/m", "file://"+t.TempDir(), sdk.MountOptions{})
			return err
		}}},
		"Client.Open":   {{"read bob's 0600 file", denied, func() error { return read(bobPrivate) }}, {"read in bob's dir", denied, func() error { return read(bobSecFile) }}},
		"Client.Rename": {{"mv bob's file", denied, func() error { _, err := alice.Rename(ctx, bobPrivate, "/users/alice/x"); return err }}},
		"Client.SetAttribute": {
			{"chmod bob's file", denied, func() error {
				_, err := alice.SetAttribute(ctx, &api.SetAttributeRequest{Path: bobPrivate, Mode: ptr(uint32(0o777))})
				return err
			}},
			{"chown bob's file", denied, func() error {
				_, err := alice.SetAttribute(ctx, &api.SetAttributeRequest{Path: bobPrivate, Owner: ptr("alice")})
				return err
			}},
		},
		"Client.CheckAccess": {{"access to bob's 0600 file", denied, func() error { return alice.CheckAccess(ctx, bobPrivate, 4) }}},
		"Client.CreateUpload": {{"an upload into bob's dir", denied, func() error {
			_, err := alice.CreateUpload(ctx, bobSecDir+"/up", sdk.CreateOptions{})
			return err
		}}},
		"Client.WritePart": {{"a part of bob's upload", denied, func() error {
			_, err := alice.WritePart(ctx, bobUp, 1, strings.NewReader("alice's part"), int64(len("alice's part")), nil)
			return err
		}}},
		"Client.UploadParts": {{"the parts of bob's upload", denied, func() error {
			_, _, err := alice.UploadParts(ctx, bobUp.GetPath(), bobUp.GetFileId())
			return err
		}}},
		"Client.WatchCompletions": {
			{"the completions in bob's dir", denied, func() error {
				_, err := alice.WatchCompletions(ctx, bobSecDir, 0, sdk.WatchOptions{})
				return err
			}},
			{"the completions under / (bob's dir filtered out)", denied, func() error {
				cs, err := alice.WatchCompletions(ctx, "/", 0, sdk.WatchOptions{MaxEvents: 10000})
				if err != nil {
					return err
				}
				for _, e := range cs.Events {
					if strings.HasPrefix(e.GetPath(), bobSecDir+"/") {
						return fmt.Errorf("saw %s completed", e.GetPath())
					}
				}
				return errNone
			}},
		},
		"Client.Uploads": {{"bob's uploads", notFound, func() error {
			ups, err := alice.Uploads(ctx, "/users/bob")
			if err != nil || len(ups) > 0 {
				return fmt.Errorf("listed %d (%v)", len(ups), err)
			}
			return errNone
		}}},
		"Client.CompleteUpload": {{"complete bob's upload", denied, func() error {
			_, err := alice.CompleteUpload(ctx, bobUp, []*sdk.UploadPart{bobPart}, sdk.CompleteOptions{})
			return err
		}}},
		"Client.AbortUpload": {{"abort bob's upload", denied, func() error { return alice.AbortUpload(ctx, bobUp.GetPath(), bobUp.GetFileId()) }}},
		"Client.Stat":        {{"stat in bob's dir", denied, func() error { _, err := alice.Stat(ctx, bobSecFile); return err }}},
		"Client.StatWith":    {{"stat ALWAYS in bob's dir", denied, func() error { _, err := alice.StatWith(ctx, bobSecFile, api.LoadMetadataType_ALWAYS); return err }}},
		"Client.Unmount":     {{"unmount bob's mount", denied, func() error { return alice.Unmount(ctx, "/users/bob/mnt") }}},
		"Jobs.Submit": {
			{"load bob's dir", denied, func() error { _, err := aj.Submit(ctx, "load", sdk.LoadConfig{Path: bobSecDir}); return err }},
			{"bob's request id", codes.AlreadyExists, func() error {
				_, err := aj.Submit(ctx, "load", sdk.LoadConfig{Path: "/users/alice"}, sdk.WithRequestID(v.jobRequest))
				return err
			}},
		},
		"Jobs.Run": {
			{"load bob's dir", denied, func() error { _, err := aj.Run(ctx, "load", sdk.LoadConfig{Path: bobSecDir}, nil); return err }},
			{"follow bob's job by its request id", codes.AlreadyExists, func() error {
				_, err := aj.Run(ctx, "load", sdk.LoadConfig{Path: "/users/alice"}, nil, sdk.WithRequestID(v.jobRequest))
				return err
			}},
		},
		"Jobs.Get":    {{"bob's job", notFound, func() error { _, err := aj.Get(ctx, v.job, true); return err }}},
		"Jobs.Cancel": {{"bob's job", notFound, func() error { return aj.Cancel(ctx, v.job) }}},
		"Jobs.Wait":   {{"bob's job", notFound, func() error { _, err := aj.Wait(ctx, v.job, nil); return err }}},
		"Jobs.Watch": {{"bob's job", notFound, func() error {
			for _, err := range aj.Watch(ctx, v.job) {
				if err != nil {
					return err
				}
			}
			return errors.New("watched")
		}}},
		"Jobs.List": {{"all jobs", notFound, func() error {
			for j, err := range aj.List(ctx, sdk.ListJobsOptions{}) {
				if err != nil || j.GetId() == v.job {
					return fmt.Errorf("listed %v (%v)", j, err)
				}
			}
			return errNone
		}}},
		"Jobs.ListPage": {{"a page of jobs", notFound, func() error {
			page, _, err := aj.ListPage(ctx, sdk.ListJobsOptions{PageSize: 1000, Submitter: "bob"}, "")
			if err != nil || len(page) > 0 {
				return fmt.Errorf("listed %d (%v)", len(page), err)
			}
			return errNone
		}}},
		"Jobs.Count": {{"bob's jobs", notFound, func() error {
			n, err := aj.Count(ctx, sdk.ListJobsOptions{Submitter: "bob"})
			if err != nil || n > 0 {
				return fmt.Errorf("counted %d (%v)", n, err)
			}
			return errNone
		}}},
		"Jobs.Workers":     {{"job workers", notFound, func() error { _, err := aj.Workers(ctx); return errOr(err) }}},
		"Jobs.WorkerTasks": {{"tasks of bob's job", notFound, func() error { ws, err := aj.WorkerTasks(ctx); return noTasksOf(ws, v.job, err) }}},
		"Jobs.AddPeer":     {{"add a raft peer", denied, func() error { return aj.AddPeer(ctx, "x", "127.0.0.1:1", "127.0.0.1:2") }}},
		"Jobs.RemovePeer":  {{"remove a raft peer", denied, func() error { return aj.RemovePeer(ctx, "localhost:1") }}},
		"Policies.Add": {{"a policy on bob's dir", denied, func() error {
			_, err := ap.Add(ctx, sdk.PolicySpec{Name: "steal", Cron: "@daily", Plan: "load", Config: sdk.LoadConfig{Path: bobSecDir}})
			return err
		}}},
		"Policies.List": {{"bob's policy", notFound, func() error {
			ps, err := ap.List(ctx)
			for _, p := range ps {
				if p.Name == "bob-yearly" {
					return fmt.Errorf("listed %v", p)
				}
			}
			return errOr(err)
		}}},
		"Policies.Get":    {{"bob's policy", notFound, func() error { _, err := ap.Get(ctx, "bob-yearly"); return err }}},
		"Policies.Remove": {{"bob's policy", notFound, func() error { return ap.Remove(ctx, "bob-yearly") }}},
		"Policies.Pause":  {{"bob's policy", notFound, func() error { _, err := ap.Pause(ctx, "bob-yearly"); return err }}},
		"Policies.Resume": {{"bob's policy", notFound, func() error { _, err := ap.Resume(ctx, "bob-yearly"); return err }}},
		"Policies.RunNow": {{"bob's policy", notFound, func() error { _, err := ap.RunNow(ctx, "bob-yearly"); return err }}},
		"Policies.Fire":   {{"bob's policy", notFound, func() error { _, _, err := ap.Fire(ctx, "bob-yearly"); return err }}},
	}
	var methods []string
	for _, x := range []any{&sdk.Client{}, &sdk.Jobs{}, &sdk.Policies{}} {
		tp := reflect.TypeOf(x)
		for i := range tp.NumMethod() {
			methods = append(methods, tp.Elem().Name()+"."+tp.Method(i).Name)
		}
	}
	for _, m := range methods {
		as, ok := sdkAttacks[m]
		if _, ex := sdkExempt[m]; ex {
			continue
		}
		if !ok {
			t.Errorf("SDK method %s has no attack in this table: add one, or exempt it with a reason", m)
			continue
		}
		for _, a := range as {
			total++
			err := a.f()
			switch {
			case errors.Is(err, errNone): // a listing that showed nothing of bob's
				refused++
			case !isCode(err, a.want):
				t.Errorf("alice: SDK %s (%s): %v; want %v", m, a.name, err, a.want)
			default:
				refused++
			}
		}
	}
	// Mount options are the superuser's to see (they may hold UFS keys).
	ms, err := alice.Mounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if len(m.GetOptions()) > 0 {
			t.Errorf("alice sees the options of mount %s", m.GetAlluviumPath())
		}
	}
	// Below the SDK: alice's token on the block worker, reading bob's
	// block by its id, asking for a local path to it, or writing into it.
	workers, err := alice.Workers(ctx)
	if err != nil || len(workers) == 0 {
		t.Fatalf("workers: %v %v", workers, err)
	}
	wa := workers[0].GetAddress()
	cc, err := rpc.Dial(fmt.Sprintf("%s:%d", wa.GetHost(), wa.GetRpcPort()), rpc.ClientOptions{Token: aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	bw := api.NewBlockWorkerClient(cc)
	blk := api.BlockID(bobInfo.GetFileId(), 0)
	raw := []struct {
		name string
		f    func() error
	}{
		{"ReadBlock of bob's block", func() error {
			_, err := testutil.ReadBlock(ctx, bw, &api.ReadBlockRequest{BlockId: blk, Length: -1})
			return err
		}},
		{"OpenLocalBlock of bob's block", func() error {
			_, err := bw.OpenLocalBlock(ctx, &api.OpenLocalBlockRequest{BlockId: blk})
			return err
		}},
		{"RemoveBlock of bob's block", func() error {
			_, err := bw.RemoveBlock(ctx, &api.RemoveBlockRequest{BlockId: blk})
			return err
		}},
		{"WriteUfsFile over bob's UFS file", func() error {
			st, err := bw.WriteUfsFile(ctx)
			if err != nil {
				return err
			}
			_ = st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Header{Header: &api.WriteUfsFileHeader{
				MountId: bobInfo.GetMountId(), UfsPath: bobInfo.GetUfsPath(), Overwrite: true, FileId: bobInfo.GetFileId()}}})
			_ = st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Chunk{Chunk: []byte("planted")}})
			_, err = st.CloseAndRecv()
			return err
		}},
	}
	for _, r := range raw {
		total++
		if err := r.f(); !isCode(err, codes.PermissionDenied) && !isCode(err, codes.FailedPrecondition) {
			t.Errorf("alice: raw %s: %v; want PermissionDenied", r.name, err)
		} else {
			refused++
		}
	}
	// bob's upload is as he left it.
	if _, parts, err := v.bob.UploadParts(ctx, bobUp.GetPath(), bobUp.GetFileId()); err != nil || len(parts) != 1 || parts[0].GetFirstBlock() != bobPart.GetFirstBlock() {
		t.Errorf("bob's upload after the attacks: %v (%v), want his one part", parts, err)
	}
	t.Logf("CLI and SDK: %d attacks, %d refused", total, refused)
	if refused != total {
		t.Errorf("%d of %d CLI/SDK attacks were not refused", total-refused, total)
	}
	if after := v.snapshot(t); after != before {
		t.Errorf("the attacks changed bob's world:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Not a broken surface: bob is served what alice was refused.
	if out := c.must(t, bobToken, "fs", "cat", bobSecFile); out != secretSec {
		t.Errorf("bob cats his file: %q", out)
	}
	if out := c.must(t, bobToken, "job", "stat", job); !strings.Contains(out, "COMPLETED") {
		t.Errorf("bob's job stat: %q", out)
	}
	if out := c.must(t, bobToken, "policy", "ls"); !strings.Contains(out, "bob-yearly") {
		t.Errorf("bob's policy ls: %q", out)
	}
	if out := c.must(t, c.token, "job", "ls"); !strings.Contains(out, "load") {
		t.Errorf("the superuser's job ls: %q", out)
	}
	if !bytes.Contains([]byte(c.must(t, bobToken, "fs", "ls", bobSecDir)), []byte(secretName)) {
		t.Errorf("bob's ls of his own directory misses %s", secretName)
	}
}

// errNone marks a listing attack that listed nothing of bob's.
var errNone = errors.New("nothing of bob's")

func errOr(err error) error {
	if err != nil {
		return err
	}
	return errNone
}

func noTasksOf(ws []*api.JobWorkerInfo, job int64, err error) error {
	if err != nil {
		return err
	}
	for _, w := range ws {
		for _, task := range w.GetTasks() {
			if task.GetJobId() == job {
				return fmt.Errorf("sees task %v of bob's job", task)
			}
		}
	}
	return errNone
}
