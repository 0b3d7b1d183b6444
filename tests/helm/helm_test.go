// Package helm tests the Helm chart at deploy/helm/alluvium with the real
// helm (built from the Go module proxy into the tool cache by .ci/run):
// `helm lint`, and `helm template` for each values file in the chart's ci/
// directory. Every rendered object is decoded strictly with the Kubernetes
// API types (an unknown or duplicate field fails), checked for what the API
// server or the kubelet would refuse or silently get wrong (selectors,
// named ports, volumes, env references), and every Alluvium config file and
// ALLUVIUM_* variable the chart sets is loaded by Alluvium's own config
// loader, so a key the chart sets that the binary does not know fails here.
package helm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/humanize"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/testutil"
)

const (
	release   = "demo"
	namespace = "data"
	// The Kubernetes version templates and lint assume (a helm built with
	// go install has no default of its own worth the name).
	kubeVersion = "1.31.0"
)

func helm(t *testing.T) string {
	t.Helper()
	bin := testutil.Tool("helm")
	if bin == "" {
		// Not skipped: the chart is tested in CI like everything else.
		t.Fatal("helm is not installed: run .ci/run (it builds the pinned helm from the Go module proxy into ~/.cache/alluvium-tools/bin), or: GOBIN=~/.cache/alluvium-tools/bin go install helm.sh/helm/v3/cmd/helm@<the version .ci/run pins>")
	}
	return bin
}

func chartDir(t *testing.T) string {
	return filepath.Join(testutil.RepoRoot(t), "deploy", "helm", "alluvium")
}

// run runs helm and returns its stdout, or its error with stderr.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	// A clean helm home: no user repositories or plugins count.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

func template(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, append([]string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}, args...)...)
}

// valuesFiles are the chart's ci/*-values.yaml, each a deployment to test.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir(t), err)
	}
	return files
}

func TestChartLints(t *testing.T) {
	for _, f := range valuesFiles(t) {
		if out, err := run(t, "lint", "--strict", chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion, "-f", f); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		} else if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("%s: helm lint said:\n%s", filepath.Base(f), out)
		}
	}
}

// TestChartRenders renders the chart with each values file and checks every
// object and every Alluvium configuration in it.
func TestChartRenders(t *testing.T) {
	for _, f := range valuesFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(f), "-values.yaml"), func(t *testing.T) {
			out, err := template(t, "-f", f)
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, out)
			r.check(t)
		})
	}
}

// TestChartRefuses: values the chart must refuse with a message that says
// what to do.
func TestChartRefuses(t *testing.T) {
	ufs := "ufs.uri=s3://b/p"
	for _, c := range []struct {
		set  []string
		want string
	}{
		{nil, "ufs.uri is required"},
		{[]string{ufs, "jobmaster.replicas=2"}, "jobmaster.replicas=2: want 1, 3 or 5"},
		{[]string{ufs, "fsmaster.replicas=0"}, "fsmaster.replicas=0"},
		{[]string{ufs, "fsmaster.replicas=4"}, "fsmaster.replicas=4: a Raft group wants an odd number of members"},
		{[]string{ufs, "worker.tiers[0].alias=RAM", "worker.tiers[0].quota=1GiB"}, "worker.tiers[0].alias=RAM: want MEM, SSD or HDD"},
		{[]string{ufs, "token.value=short"}, "token.value: want at least 16 characters"},
	} {
		var args []string
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		_, err := template(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %v: %v; want a refusal saying %q", c.set, err, c.want)
		}
	}
}

// TestUnknownKeyFails shows the check has teeth: a key the chart passes
// through (config:) that Alluvium does not know is refused by the loader
// this test uses on every rendered file.
func TestUnknownKeyFails(t *testing.T) {
	out, err := template(t, "--set", "ufs.uri=s3://b/p", "--set", "config.proxy.master=elsewhere:19998")
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, out)
	file := r.configFiles["proxy.yaml"]
	if file == "" {
		t.Fatal("no proxy.yaml in the config Secret")
	}
	if err := loadConfig(t, "proxy.yaml", file, nil); err == nil || !strings.Contains(err.Error(), "did you mean client.master") {
		t.Fatalf("a rendered proxy.yaml with proxy.master loaded: %v", err)
	}
}

// rendered is what one `helm template` produced, by kind.
type rendered struct {
	objects      []runtime.Object
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	statefulSets map[string]*appsv1.StatefulSet
	daemonSets   map[string]*appsv1.DaemonSet
	deployments  map[string]*appsv1.Deployment
	pdbs         map[string]*policyv1.PodDisruptionBudget
	configFiles  map[string]string // the config Secret's files
}

func decode(t *testing.T, out string) *rendered {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	// Strict: a field the API types do not have, or one given twice, is an
	// error, as the API server's strict field validation makes it.
	ser := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	r := &rendered{
		services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{}, statefulSets: map[string]*appsv1.StatefulSet{},
		daemonSets: map[string]*appsv1.DaemonSet{}, deployments: map[string]*appsv1.Deployment{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, configFiles: map[string]string{},
	}
	docs := kyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if onlyComments(doc) {
			continue
		}
		obj, gvk, err := ser.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decoding a rendered object strictly: %v\n%s", err, doc)
		}
		r.objects = append(r.objects, obj)
		var name string
		switch o := obj.(type) {
		case *corev1.Service:
			name, r.services[o.Name] = o.Name, o
		case *corev1.Secret:
			name, r.secrets[o.Name] = o.Name, o
		case *appsv1.StatefulSet:
			name, r.statefulSets[o.Name] = o.Name, o
		case *appsv1.DaemonSet:
			name, r.daemonSets[o.Name] = o.Name, o
		case *appsv1.Deployment:
			name, r.deployments[o.Name] = o.Name, o
		case *policyv1.PodDisruptionBudget:
			name, r.pdbs[o.Name] = o.Name, o
		default:
			t.Fatalf("the chart renders a %s this test does not check", gvk)
		}
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			t.Errorf("%s %q: %s", gvk.Kind, name, msg)
		}
	}
	if s := r.secrets[release+"-alluvium-config"]; s != nil {
		r.configFiles = s.StringData
	}
	return r
}

func onlyComments(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// workload is the pod template of a StatefulSet, DaemonSet or Deployment.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        *corev1.PodTemplateSpec
	replicas   int
}

func (r *rendered) workloads() []workload {
	var ws []workload
	for _, s := range r.statefulSets {
		ws = append(ws, workload{"StatefulSet", s.Name, s.Spec.Selector.MatchLabels, &s.Spec.Template, int(*s.Spec.Replicas)})
	}
	for _, d := range r.daemonSets {
		ws = append(ws, workload{"DaemonSet", d.Name, d.Spec.Selector.MatchLabels, &d.Spec.Template, 1})
	}
	for _, d := range r.deployments {
		ws = append(ws, workload{"Deployment", d.Name, d.Spec.Selector.MatchLabels, &d.Spec.Template, int(*d.Spec.Replicas)})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].name < ws[j].name })
	return ws
}

func (r *rendered) check(t *testing.T) {
	t.Helper()
	full := release + "-alluvium"
	if len(r.configFiles) != 4 {
		t.Fatalf("config Secret files = %v, want fsmaster, jobmaster, worker and proxy", keys(r.configFiles))
	}
	for _, want := range []string{full + "-fsmaster", full + "-jobmaster"} {
		if r.statefulSets[want] == nil {
			t.Errorf("no StatefulSet %s", want)
		}
		if s := r.services[want]; s == nil || s.Spec.ClusterIP != "None" || !s.Spec.PublishNotReadyAddresses {
			t.Errorf("no headless Service %s publishing not-ready addresses (a Raft group finds its members before they are ready)", want)
		}
	}
	if r.daemonSets[full+"-worker"] == nil {
		t.Errorf("no worker DaemonSet")
	}
	for _, w := range r.workloads() {
		r.checkWorkload(t, w)
	}
	for _, s := range r.statefulSets {
		if r.services[s.Spec.ServiceName] == nil {
			t.Errorf("StatefulSet %s: serviceName %q is not rendered", s.Name, s.Spec.ServiceName)
		}
		if *s.Spec.Replicas > 1 && s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("StatefulSet %s: %d members started one by one cannot elect (podManagementPolicy Parallel)", s.Name, *s.Spec.Replicas)
		}
	}
	for _, s := range r.services {
		r.checkService(t, s)
	}
	for _, p := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Errorf("PDB %s: %v", p.Name, err)
			continue
		}
		n := 0
		for _, w := range r.workloads() {
			if sel.Matches(labels.Set(w.pod.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("PDB %s selects %d workloads, want 1", p.Name, n)
		}
	}
	for _, role := range []string{"fsmaster", "jobmaster"} {
		if r.pdbs[full+"-"+role] == nil {
			t.Errorf("no PodDisruptionBudget for the %ss", role)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var configArg = regexp.MustCompile(`^/etc/alluvium/config/([a-z]+\.yaml)$`)

func (r *rendered) checkWorkload(t *testing.T, w workload) {
	t.Helper()
	what := w.kind + " " + w.name
	if !labels.SelectorFromSet(w.selector).Matches(labels.Set(w.pod.Labels)) {
		t.Errorf("%s: selector %v does not match its pods' labels %v", what, w.selector, w.pod.Labels)
	}
	for k, v := range w.pod.Labels {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s: label %s=%s: %s", what, k, v, msg)
		}
	}
	if a := w.pod.Annotations; a["prometheus.io/scrape"] == "true" {
		if !r.hasPort(w.pod, a["prometheus.io/port"]) {
			t.Errorf("%s: prometheus.io/port %q is not a port of its containers", what, a["prometheus.io/port"])
		}
	}
	vols := map[string]corev1.Volume{}
	for _, v := range w.pod.Spec.Volumes {
		vols[v.Name] = v
		if s := v.Secret; s != nil && r.secrets[s.SecretName] == nil && !strings.HasPrefix(s.SecretName, "my-") {
			t.Errorf("%s: volume %s: Secret %s is not rendered", what, v.Name, s.SecretName)
		}
	}
	if len(w.pod.Spec.Containers) == 0 {
		t.Fatalf("%s: no containers", what)
	}
	// A non-root worker can write a hostPath directory (which the kubelet
	// makes owned by root) only if the init container handed it over.
	owned := map[string]bool{}
	for _, c := range w.pod.Spec.InitContainers {
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("%s init container %s: mount of volume %q, which the pod does not have", what, c.Name, m.Name)
			}
			if c.Name == "own-host-dirs" {
				owned[m.Name] = true
			}
		}
	}
	if sc := w.pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser != 0 {
		for _, c := range w.pod.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if v := vols[m.Name]; v.HostPath != nil && !owned[m.Name] {
					t.Errorf("%s: hostPath volume %s is not handed to user %d by an init container: the worker could not write it", what, m.Name, *sc.RunAsUser)
				}
			}
		}
	}
	for _, c := range w.pod.Spec.Containers {
		cwhat := what + " container " + c.Name
		mounts := map[string]string{} // mount path -> volume
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok && !r.claimTemplate(w, m.Name) {
				t.Errorf("%s: mount of volume %q, which the pod does not have", cwhat, m.Name)
			}
			mounts[m.MountPath] = m.Name
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			for _, msg := range validation.IsValidPortName(p.Name) {
				t.Errorf("%s: port name %q: %s", cwhat, p.Name, msg)
			}
			ports[p.Name] = true
		}
		if pr := c.ReadinessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" {
			if c.Name != "secondary" { // the secondary serves nothing
				t.Errorf("%s: no readiness probe on /healthz", cwhat)
			}
		} else if !ports[pr.HTTPGet.Port.StrVal] {
			t.Errorf("%s: readiness probe on port %q, which it does not expose", cwhat, pr.HTTPGet.Port.String())
		}
		// The environment: $(VAR) references name variables defined
		// before them, and every ALLUVIUM_* variable is one Alluvium reads.
		defined := map[string]bool{}
		var env []string
		for _, e := range c.Env {
			for _, ref := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(e.Value, -1) {
				if !defined[ref[1]] {
					t.Errorf("%s: %s refers to $(%s), not defined before it (Kubernetes would pass it literally)", cwhat, e.Name, ref[1])
				}
			}
			defined[e.Name] = true
			env = append(env, e.Name+"="+e.Value)
		}
		if err := config.CheckEnv(env); err != nil {
			t.Errorf("%s: %v", cwhat, err)
		}
		// alluvium ROLE --config /etc/alluvium/config/FILE: that file, and
		// what it names, must be there.
		cmd := c.Command
		if len(cmd) != 4 || cmd[0] != "alluvium" || cmd[2] != "--config" || !configArg.MatchString(cmd[3]) {
			t.Errorf("%s: command %q, want alluvium ROLE --config /etc/alluvium/config/FILE", cwhat, cmd)
			continue
		}
		if mounts["/etc/alluvium/config"] != "config" {
			t.Errorf("%s: the config Secret is not mounted at /etc/alluvium/config", cwhat)
		}
		file := configArg.FindStringSubmatch(cmd[3])[1]
		body, ok := r.configFiles[file]
		if !ok {
			t.Errorf("%s: --config %s, which the config Secret does not hold", cwhat, file)
			continue
		}
		if err := loadConfig(t, file, body, env); err != nil {
			t.Errorf("%s: Alluvium refuses its configuration: %v\n%s", cwhat, err, body)
			continue
		}
		cfg := mustLoad(t, file, body)
		r.checkRole(t, cwhat, w, c, mounts, cfg)
	}
}

func (r *rendered) claimTemplate(w workload, name string) bool {
	if s := r.statefulSets[w.name]; s != nil {
		for _, c := range s.Spec.VolumeClaimTemplates {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

func (r *rendered) hasPort(pod *corev1.PodTemplateSpec, port string) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if fmt.Sprint(p.ContainerPort) == port || p.Name == port {
				return true
			}
		}
	}
	return false
}

// checkService: its selector picks a workload, and each target port is a
// named port of that workload's containers.
func (r *rendered) checkService(t *testing.T, s *corev1.Service) {
	t.Helper()
	for _, msg := range validation.IsDNS1035Label(s.Name) {
		t.Errorf("Service %s: %s", s.Name, msg)
	}
	var picked []workload
	for _, w := range r.workloads() {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
			picked = append(picked, w)
		}
	}
	if len(picked) != 1 {
		t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(picked))
		return
	}
	for _, p := range s.Spec.Ports {
		if !r.hasPort(picked[0].pod, p.TargetPort.String()) {
			t.Errorf("Service %s: target port %s is not a port of %s", s.Name, p.TargetPort.String(), picked[0].name)
		}
	}
}

// loadConfig loads a rendered config file as the process would: the file,
// then the container's ALLUVIUM_* variables (their values here are only
// checked for names: $(POD_NAME) and the like are the kubelet's to fill).
func loadConfig(t *testing.T, name, body string, env []string) error {
	t.Helper()
	if err := config.CheckEnv(env); err != nil {
		return err
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	l := config.NewLoader()
	if err := l.ReadFile(p); err != nil {
		return err
	}
	_, err := l.Load()
	return err
}

func mustLoad(t *testing.T, name, body string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	l := config.NewLoader()
	if err := l.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	cfg, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// podHosts are the stable names of a StatefulSet's pods.
func (r *rendered) podHosts(sts string) []string {
	s := r.statefulSets[sts]
	if s == nil {
		return nil
	}
	var out []string
	for i := 0; i < int(*s.Spec.Replicas); i++ {
		out = append(out, fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local", s.Name, i, s.Spec.ServiceName, namespace))
	}
	return out
}

func (r *rendered) rpcAddrs(sts string, port int) string {
	var out []string
	for _, h := range r.podHosts(sts) {
		out = append(out, fmt.Sprintf("%s:%d", h, port))
	}
	return strings.Join(out, ",")
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// checkRole checks what a role's configuration says against the objects
// that realise it: addresses, raft peers, ports, paths, tiers.
func (r *rendered) checkRole(t *testing.T, what string, w workload, c corev1.Container, mounts map[string]string, cfg *config.Config) {
	t.Helper()
	full := release + "-alluvium"
	fsAddrs := r.rpcAddrs(full+"-fsmaster", cfg.FSMaster.RPCPort)
	jmAddrs := r.rpcAddrs(full+"-jobmaster", cfg.JobMaster.RPCPort)
	if cfg.Client.Master != fsAddrs || cfg.Client.JobMaster != jmAddrs {
		t.Errorf("%s: client.master %q, client.job-master %q; want every FS master (%s) and job master (%s) by its stable name", what, cfg.Client.Master, cfg.Client.JobMaster, fsAddrs, jmAddrs)
	}
	if dir := filepath.Dir(cfg.Security.TokenFile); mounts[dir] != "token" {
		t.Errorf("%s: security.token-file %s is not on the token Secret's mount", what, cfg.Security.TokenFile)
	}
	if cfg.Home != "/var/lib/alluvium" || mounts[cfg.Home] == "" {
		t.Errorf("%s: home %s is not a volume of its own", what, cfg.Home)
	}
	containerPort := func(name string) int {
		for _, p := range c.Ports {
			if p.Name == name {
				return int(p.ContainerPort)
			}
		}
		return -1
	}
	role := c.Command[1]
	switch role {
	case "fsmaster", "secondary":
		if role == "fsmaster" && (containerPort("rpc") != cfg.FSMaster.RPCPort || containerPort("http") != cfg.FSMaster.HTTPPort) {
			t.Errorf("%s: ports %v, config rpc %d http %d", what, c.Ports, cfg.FSMaster.RPCPort, cfg.FSMaster.HTTPPort)
		}
		if cfg.FSMaster.JobMaster != jmAddrs {
			t.Errorf("%s: fsmaster.job-master %q, want %q", what, cfg.FSMaster.JobMaster, jmAddrs)
		}
		if !strings.HasPrefix(cfg.FSMaster.Journal.Dir, cfg.Home+"/") {
			t.Errorf("%s: journal %s is not under the persistent home", what, cfg.FSMaster.Journal.Dir)
		}
		switch embedded := cfg.FSMaster.Journal.Type == "embedded"; {
		case embedded != (w.replicas > 1):
			t.Errorf("%s: %d FS masters with fsmaster.journal.type %q", what, w.replicas, cfg.FSMaster.Journal.Type)
		case embedded:
			if role == "secondary" {
				t.Errorf("%s: a secondary beside FS masters with an embedded journal", what)
			}
			if containerPort("raft") != cfg.FSMaster.Raft.Port {
				t.Errorf("%s: ports %v, config raft %d", what, c.Ports, cfg.FSMaster.Raft.Port)
			}
			r.checkPeers(t, what, w, c, "fsmaster", cfg.FSMaster.Raft.Peers, cfg.FSMaster.Raft.Port, cfg.FSMaster.RPCPort)
		case role == "fsmaster" && envValue(c, "ALLUVIUM_FSMASTER_HOST") != "$(POD_NAME)."+full+"-fsmaster."+namespace+".svc.cluster.local":
			t.Errorf("%s: ALLUVIUM_FSMASTER_HOST %q is not its stable name", what, envValue(c, "ALLUVIUM_FSMASTER_HOST"))
		}
	case "jobmaster":
		if containerPort("rpc") != cfg.JobMaster.RPCPort || containerPort("raft") != cfg.JobMaster.Raft.Port {
			t.Errorf("%s: ports %v, config rpc %d raft %d", what, c.Ports, cfg.JobMaster.RPCPort, cfg.JobMaster.Raft.Port)
		}
		r.checkPeers(t, what, w, c, "jobmaster", cfg.JobMaster.Raft.Peers, cfg.JobMaster.Raft.Port, cfg.JobMaster.RPCPort)
		if !strings.HasPrefix(cfg.JobMaster.Raft.Dir, cfg.Home+"/") {
			t.Errorf("%s: raft dir %s is not under the persistent home", what, cfg.JobMaster.Raft.Dir)
		}
	case "worker":
		if cfg.Worker.Master != fsAddrs {
			t.Errorf("%s: worker.master %q, want %q", what, cfg.Worker.Master, fsAddrs)
		}
		if cfg.JobWorker.JobMaster != jmAddrs {
			t.Errorf("%s: jobworker.job-master %q, want %q", what, cfg.JobWorker.JobMaster, jmAddrs)
		}
		if containerPort("rpc") != cfg.Worker.RPCPort || containerPort("http") != cfg.Worker.HTTPPort || containerPort("job") != cfg.JobWorker.RPCPort {
			t.Errorf("%s: ports %v, config rpc %d http %d job %d", what, c.Ports, cfg.Worker.RPCPort, cfg.Worker.HTTPPort, cfg.JobWorker.RPCPort)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range w.pod.Spec.Volumes {
			vols[v.Name] = v
		}
		// Each tier is a volume mounted at its path; an emptyDir is
		// bounded by the tier's quota.
		for i, tier := range cfg.Worker.Tiers {
			v, ok := vols[mounts[tier.Path]]
			if !ok {
				t.Errorf("%s: tier %d (%s) at %s is not a mounted volume", what, i, tier.Alias, tier.Path)
				continue
			}
			quota, err := humanize.ParseBytes(tier.Quota)
			if err != nil {
				t.Errorf("%s: tier %d: %v", what, i, err)
				continue
			}
			switch {
			case v.EmptyDir != nil:
				if v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Value() != quota {
					t.Errorf("%s: tier %d (%s, quota %s = %d bytes): emptyDir sizeLimit %v", what, i, tier.Alias, tier.Quota, quota, v.EmptyDir.SizeLimit)
				}
				if tier.Alias == "MEM" && v.EmptyDir.Medium != corev1.StorageMediumMemory {
					t.Errorf("%s: MEM tier %d on an emptyDir of medium %q, not Memory", what, i, v.EmptyDir.Medium)
				}
			case v.HostPath != nil:
			default:
				t.Errorf("%s: tier %d is neither an emptyDir nor a hostPath", what, i)
			}
		}
		if s := cfg.Worker.DomainSocket; s != "off" {
			v := vols[mounts[filepath.Dir(s)]]
			if v.HostPath == nil || v.HostPath.Path != filepath.Dir(s) {
				t.Errorf("%s: worker.domain-socket %s is not on a hostPath directory at the same path (pods of the node could not reach it)", what, s)
			}
		}
		if envValue(c, "ALLUVIUM_WORKER_HOST") != "$(POD_IP)" {
			t.Errorf("%s: the worker does not advertise its pod IP", what)
		}
	case "proxy":
		if containerPort("rest") != cfg.Proxy.RESTPort || containerPort("s3") != cfg.Proxy.S3Port {
			t.Errorf("%s: ports %v, config rest %d s3 %d", what, c.Ports, cfg.Proxy.RESTPort, cfg.Proxy.S3Port)
		}
	default:
		t.Errorf("%s: unknown role %q", what, role)
	}
}

// checkPeers: every pod of a raft group finds itself among the peers by its
// pod name (its raft node id, from the environment), listed at its stable
// name; a group of one lists itself too, so that the address raft records
// is the stable one. Raft advertises the pod IP, which needs no DNS record
// at start.
func (r *rendered) checkPeers(t *testing.T, what string, w workload, c corev1.Container, role string, entries []string, raftPort, rpcPort int) {
	t.Helper()
	peers, err := raftgroup.ParsePeers(role+".raft.peers", entries)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	hosts := r.podHosts(w.name)
	if len(peers) != w.replicas {
		t.Errorf("%s: %d peers for %d replicas", what, len(peers), w.replicas)
	}
	for i, p := range peers {
		if i >= len(hosts) {
			break
		}
		name := fmt.Sprintf("%s-%d", w.name, i)
		if p.ID != name || p.RaftAddr != fmt.Sprintf("%s:%d", hosts[i], raftPort) || p.RPCAddr != fmt.Sprintf("%s:%d", hosts[i], rpcPort) {
			t.Errorf("%s: peer %d = %+v, want id %s at %s", what, i, p, name, hosts[i])
		}
	}
	prefix := "ALLUVIUM_" + strings.ToUpper(role)
	if envValue(c, prefix+"_RAFT_NODE_ID") != "$(POD_NAME)" || envValue(c, prefix+"_HOST") != "$(POD_IP)" {
		t.Errorf("%s: its raft node id is not its pod name, or it does not advertise its pod IP", what)
	}
}
