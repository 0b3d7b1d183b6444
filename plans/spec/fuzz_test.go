package spec

import (
	"encoding/json"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/internal/paths"
)

func js(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzDecodeLoadConfig(f *testing.F) {
	for _, s := range []string{
		`{"path":"/data"}`, `{"path":"/a/../b","replication":2,"workers":["h1"],"verify":true,"bandwidth":1048576}`,
		`{"path":""}`, `{`, `[]`, `{"path":"/x","batchFiles":-1}`, `{"path":"/x"}{"path":"/y"}`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeLoad(b)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error of code %s: %v", status.Code(err), err)
			}
			return
		}
		// A config that decodes is normalized and decodes to itself again.
		if _, perr := paths.Clean(c.Path); perr != nil || c.Replication < 1 || c.BatchFiles < 1 || c.PageSize < 1 {
			t.Fatalf("accepted a bad config %+v", c)
		}
		again, err := DecodeLoad(js(t, c))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(c) {
			t.Fatalf("round trip: %+v -> %+v (%v)", c, again, err)
		}
	})
}

func FuzzDecodePlanConfigs(f *testing.F) {
	for _, s := range []string{
		`{"src":"/a","dst":"/b"}`, `{"src":"/a","dst":"/a"}`, `{"path":"/p","replication":2}`,
		`{"files":[{"path":"/x","id":3}]}`, `{"path":"/p","files":[]}`, `{}`, `{"src":"/a","dst":"/b","overwrite":true,"checksum":true}`,
		`{"path":"/p","command":["wc","-c"]}`, `{"path":"/p","command":["cat"],"input":"stdin","perBatch":true}`,
		`{"src":"/a","dst":"/b","ignoreExisting":true,"dryRun":true}`, `{"src":"/a","dst":"/b","overwrite":true,"ignoreExisting":true}`,
		`{"src":"/a","dst":"/b","maxDelete":5}`, `{"src":"/a","dst":"/b","maxDelete":-1}`,
		`{"src":"/a","dst":"/b","include":["**/*.parquet","/top/{a,b}?"],"exclude":["tmp/"],"minSize":10,"maxSize":100}`,
		`{"src":"/a","dst":"/b","minAge":"1d12h","maxAge":"1w"}`, `{"src":"/a","dst":"/b","minAge":"2w","maxAge":"1d"}`,
		`{"src":"/a","dst":"/b","include":["[z-a]"]}`, `{"src":"/a","dst":"/b","exclude":["{a,{b}}"]}`, `{"path":"/p","maxAge":"7x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dec := range []func([]byte) (any, error){
			func(b []byte) (any, error) { return DecodeCopy(b) },
			func(b []byte) (any, error) { return DecodeMove(b) },
			func(b []byte) (any, error) { return DecodePersist(b) },
			func(b []byte) (any, error) { return DecodeExec(b) },
			func(b []byte) (any, error) { return DecodeReplicate(b) },
			func(b []byte) (any, error) { return DecodeSync(b) },
		} {
			v, err := dec(b)
			if err != nil {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("error of code %s: %v", status.Code(err), err)
				}
				continue
			}
			// A config that decodes decodes to itself again.
			again, err := dec(js(t, v))
			if err != nil || string(js(t, again)) != string(js(t, v)) {
				t.Fatalf("round trip: %+v -> %+v (%v)", v, again, err)
			}
		}
	})
}

func FuzzCompileGlob(f *testing.F) {
	for _, s := range []string{"*.parquet", "/logs/**/*.gz", "tmp/", "a/{b,c}/d", "[!a-c]?x", `\*`, "[", "{a,", "***", "[]a]", "a\\"} {
		f.Add(s, "logs/2024/x.gz")
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		g, err := CompileGlob(pattern)
		if err != nil {
			return
		}
		_ = g.Match(path) // never panics
		if g.String() != pattern {
			t.Fatalf("String() = %q, want %q", g.String(), pattern)
		}
	})
}
