package plans

import (
	"context"
	"reflect"
	"testing"

	"github.com/alluvium/alluvium/plans/spec"
)

// The planner of a submit takes the config its validation decoded instead
// of decoding the canonical bytes again: that is sound only if decoding
// the canonical bytes gives the same config, whatever the fields set.
func TestDecodedConfigStandsForItsCanonicalBytes(t *testing.T) {
	for _, raw := range []string{
		`{"path":"/a//b/"}`,
		`{"path":"/d","replication":2,"workers":["w1","10.0.0.1:29999"],"excludeWorkers":["w3"],"verify":true,"bandwidth":1048576,"noSync":true,"dryRun":true,"include":["*.csv"],"exclude":["tmp/**"],"minSize":1,"maxSize":1000,"minAge":"1d","maxAge":"2w","batchFiles":8,"batchBytes":4096,"pageSize":10}`,
	} {
		c, err := spec.DecodeLoad([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		v, err := spec.Accept(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx := WithDecodedConfigs(context.Background())
		keepDecoded(ctx, v.Config, c)
		kept, ok := decodedAs[spec.LoadConfig](ctx, v.Config)
		if !ok {
			t.Fatalf("%s: the kept config is not found under its canonical bytes", raw)
		}
		again, err := spec.DecodeLoad(v.Config)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(kept, again) {
			t.Fatalf("%s: kept %+v, decoding %s gives %+v", raw, kept, v.Config, again)
		}
		if _, ok := decodedAs[spec.LoadConfig](ctx, []byte(raw+" ")); ok {
			t.Fatal("a kept config answers for other bytes")
		}
		if _, ok := decodedAs[spec.CopyConfig](ctx, v.Config); ok {
			t.Fatal("a kept config answers for another type")
		}
		if _, ok := decodedAs[spec.LoadConfig](context.Background(), v.Config); ok {
			t.Fatal("a context without room answers")
		}
	}
}
