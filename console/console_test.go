package console

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/alluvium/alluvium/api"
)

func TestBytesSeries(t *testing.T) {
	j := &api.JobInfo{
		CreatedMs: 1000, UpdatedMs: 5000, FinishedMs: 5000, BytesDone: 60, Status: api.JobInfo_COMPLETED,
		Tasks: []*api.TaskInfo{
			{Status: api.TaskInfo_COMPLETED, BytesDone: 20, UpdatedMs: 3000},
			{Status: api.TaskInfo_COMPLETED, BytesDone: 10, UpdatedMs: 2000},
			{Status: api.TaskInfo_FAILED, BytesDone: 5, UpdatedMs: 2500}, // not done: not counted
			{Status: api.TaskInfo_COMPLETED, BytesDone: 30, UpdatedMs: 4000},
			{Status: api.TaskInfo_COMPLETED, BytesDone: 0, UpdatedMs: 4500}, // moved nothing
		},
	}
	got := fmt.Sprint(bytesSeries(j))
	if want := "[[1000 0] [2000 10] [3000 30] [4000 60]]"; got != want {
		t.Fatalf("series %s, want %s", got, want)
	}
	// More tasks than listed: the steps cover those listed, the last point
	// the whole job.
	j.BytesDone = 100
	got = fmt.Sprint(bytesSeries(j))
	if want := "[[1000 0] [2000 10] [3000 30] [4000 60] [5000 100]]"; got != want {
		t.Fatalf("series %s, want %s", got, want)
	}
	// A job with no task yet: its start and its last update.
	got = fmt.Sprint(bytesSeries(&api.JobInfo{CreatedMs: 1000, UpdatedMs: 1200}))
	if want := "[[1000 0] [1200 0]]"; got != want {
		t.Fatalf("series %s, want %s", got, want)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/jobs?status=FAILED": "/ui/jobs?status=FAILED",
		"/ui/jobs/7":             "/ui/jobs/7",
		"":                       "/ui/",
		"https://evil.example/":  "/ui/",
		"//evil.example/ui/":     "/ui/",
		"/ui/login":              "/ui/",
		"/ui/api/jobs":           "/ui/",
		"/ui/\\evil":             "/ui/",
		"/metrics":               "/ui/",
		"/ui/x\r\nSet-Cookie: a": "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// The request ids of SDK pipeline jobs name the run, the step and the
// attempt (with the pipeline's name since the console; without before).
func TestSDKRequestID(t *testing.T) {
	for id, want := range map[string]string{
		"refresh.0123456789abcdef/warm/1":     "refresh|0123456789abcdef|warm|1",
		"a.b.0123456789abcdef/copy step/2":    "a.b|0123456789abcdef|copy step|2",
		"0123456789abcdef/persist/3":          "|0123456789abcdef|persist|3",
		"x.0123456789abcdef/dir/with/slash/1": "x|0123456789abcdef|dir/with/slash|1",
		"policy/nightly/1700000000000/1":      "",
		"3084f6ba6b9750e60677b433eb18dba9":    "",
		"console/123":                         "",
	} {
		m := sdkRequestID.FindStringSubmatch(id)
		got := ""
		if m != nil {
			got = m[1] + "|" + m[2] + "|" + m[3] + "|" + m[4]
		}
		if got != want {
			t.Errorf("%q parsed as %q, want %q", id, got, want)
		}
	}
}

func TestListOptions(t *testing.T) {
	r := httptest.NewRequest("GET", "/ui/api/jobs?status=failed,RUNNING&plan=load&submitter=bob&policy=p", nil)
	o, err := listOptions(r)
	if err != nil || !o.NewestFirst || o.Plan != "load" || o.Submitter != "bob" || o.Policy != "p" ||
		fmt.Sprint(o.Statuses) != "[FAILED RUNNING]" {
		t.Fatalf("options %+v %v", o, err)
	}
	if _, err := listOptions(httptest.NewRequest("GET", "/ui/api/jobs?status=DONE", nil)); err == nil {
		t.Fatal("an unknown status was accepted")
	}
}
