package proxy

import (
	"testing"

	"google.golang.org/grpc/codes"
)

// FuzzParseOptions: a REST options body is JSON from any client. Parsing
// and every typed getter never panic, and a bad value is an
// InvalidArgument naming the option.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		`{"recursive":true,"writeType":"CACHE_THROUGH","blockSizeBytes":1048576}`,
		`{"commonOptions":{"ttl":1000,"ttlAction":"DELETE"},"mode":"0755"}`,
		`{"mode":{"ownerBits":"ALL","groupBits":"READ","otherBits":"NONE"}}`,
		`{"recursive":"yes","mode":-1,"ttl":"x"}`, `{"properties":{"a":"b","c":1}}`, `null`, ``, `[1]`,
		`{"ReadType":"cache_promote","loadMetadataType":"ALWAYS"}`, `{"mode":"0x1ff"}`, `{"blockSizeBytes":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, rerr := parseOptions(b)
		if rerr != nil {
			if rerr.code != codes.InvalidArgument {
				t.Fatalf("%q: refused with %s", b, rerr.code)
			}
			return
		}
		check := func(rerr *restError) {
			if rerr != nil && rerr.code != codes.InvalidArgument {
				t.Fatalf("%q: option refused with %s: %s", b, rerr.code, rerr.msg)
			}
		}
		for _, name := range []string{"recursive", "overwrite", "pinned", "allowExists", "persisted"} {
			_, e := o.boolean(name)
			check(e)
			_, e = o.optBool(name)
			check(e)
		}
		for _, name := range []string{"blockSizeBytes", "offset", "length", "ttl"} {
			_, _, e := o.integer(name)
			check(e)
		}
		_, _, e := o.str("owner")
		check(e)
		_, e = o.writeType()
		check(e)
		_, e = o.readType()
		check(e)
		_, e = o.loadMetadataType()
		check(e)
		_, e = o.ttlAction()
		check(e)
		_, _, e = o.ttl()
		check(e)
		_, _, e = o.mode()
		check(e)
		_, e = o.strMap("properties")
		check(e)
	})
}
