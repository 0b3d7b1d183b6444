package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

// maxOptionsBody bounds an options body.
const maxOptionsBody = 1 << 20

// options is a request's JSON option object with Alluxio's camelCase names,
// read leniently: names in any case, unknown names ignored, enum values in
// any case, "null" or no body at all for no options. Alluxio 2.x nests some
// options (ttl, ttlAction) under "commonOptions"; those are found too.
type options map[string]json.RawMessage

func readOptions(body io.Reader) (options, *restError) {
	if body == nil {
		return options{}, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, maxOptionsBody+1))
	if err != nil {
		return nil, restErrorf(codes.InvalidArgument, "reading the options body: %v", err)
	}
	if len(b) > maxOptionsBody {
		return nil, restErrorf(codes.InvalidArgument, "options body larger than %d bytes", maxOptionsBody)
	}
	return parseOptions(b)
}

func parseOptions(b []byte) (options, *restError) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return options{}, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, restErrorf(codes.InvalidArgument, "options body is not a JSON object: %v", err)
	}
	o := options{}
	for k, v := range raw {
		o[strings.ToLower(k)] = v
	}
	if c, ok := o["commonoptions"]; ok {
		var common map[string]json.RawMessage
		if json.Unmarshal(c, &common) == nil {
			for k, v := range common {
				if _, set := o[strings.ToLower(k)]; !set {
					o[strings.ToLower(k)] = v
				}
			}
		}
	}
	return o, nil
}

func (o options) get(name string) (json.RawMessage, bool) {
	v, ok := o[strings.ToLower(name)]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

func badOption(name string, v json.RawMessage, want string) *restError {
	s := string(v)
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return restErrorf(codes.InvalidArgument, "option %s = %s: want %s", name, s, want)
}

// boolean reads a bool (or "true"/"false").
func (o options) boolean(name string) (bool, *restError) {
	v, ok := o.get(name)
	if !ok {
		return false, nil
	}
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return b, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if b, err := strconv.ParseBool(s); err == nil {
			return b, nil
		}
	}
	return false, badOption(name, v, "true or false")
}

// optBool reads a bool that may be absent.
func (o options) optBool(name string) (*bool, *restError) {
	if _, ok := o.get(name); !ok {
		return nil, nil
	}
	b, err := o.boolean(name)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// integer reads an integer (or its decimal string); set says it was given.
func (o options) integer(name string) (n int64, set bool, rerr *restError) {
	v, ok := o.get(name)
	if !ok {
		return 0, false, nil
	}
	if json.Unmarshal(v, &n) == nil {
		return n, true, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return n, true, nil
		}
	}
	return 0, false, badOption(name, v, "an integer")
}

// int32 reads an integer option that is an int32 on the wire, refusing
// (naming the option) a value outside [lo, MaxInt32] rather than letting it
// wrap when narrowed.
func (o options) int32(name string, lo int64) (n int32, set bool, rerr *restError) {
	v, set, err := o.integer(name)
	if err != nil || !set {
		return 0, set, err
	}
	if v < lo || v > math.MaxInt32 {
		raw, _ := o.get(name)
		return 0, false, badOption(name, raw, fmt.Sprintf("an integer from %d to %d", lo, math.MaxInt32))
	}
	return int32(v), true, nil
}

func (o options) str(name string) (s string, set bool, rerr *restError) {
	v, ok := o.get(name)
	if !ok {
		return "", false, nil
	}
	if json.Unmarshal(v, &s) != nil {
		return "", false, badOption(name, v, "a string")
	}
	return s, true, nil
}

// enum reads a name from values (matched in any case, '-' or ' ' as '_').
func (o options) enum(name string, values []string) (string, *restError) {
	s, set, err := o.str(name)
	if err != nil || !set {
		return "", err
	}
	norm := strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(strings.TrimSpace(s)))
	for _, v := range values {
		if norm == v {
			return v, nil
		}
	}
	v, _ := o.get(name)
	return "", badOption(name, v, "one of "+strings.Join(values, ", "))
}

func (o options) writeType() (api.WriteType, *restError) {
	s, err := o.enum("writeType", []string{"MUST_CACHE", "CACHE_THROUGH", "THROUGH", "ASYNC_THROUGH"})
	if err != nil || s == "" {
		return api.WriteType_WRITE_TYPE_UNSPECIFIED, err
	}
	return api.WriteType(api.WriteType_value[s]), nil
}

func (o options) readType() (api.ReadType, *restError) {
	s, err := o.enum("readType", []string{"CACHE", "NO_CACHE", "CACHE_PROMOTE"})
	if err != nil || s == "" {
		return api.ReadType_READ_TYPE_UNSPECIFIED, err
	}
	return api.ReadType(api.ReadType_value[s]), nil
}

// loadMetadataType validates loadMetadataType (Never, Once, Always).
func (o options) loadMetadataType() (api.LoadMetadataType, *restError) {
	s, err := o.enum("loadMetadataType", []string{"NEVER", "ONCE", "ALWAYS"})
	if err != nil || s == "" {
		return 0, err
	}
	v, ok := api.LoadMetadataType_value[s]
	if !ok {
		return 0, nil
	}
	return api.LoadMetadataType(v), nil
}

func (o options) ttlAction() (string, *restError) {
	return o.enum("ttlAction", []string{"FREE", "DELETE"})
}

// ttl reads ttl in ms; Alluxio's -1 (no TTL) is 0 here.
func (o options) ttl() (ms int64, set bool, rerr *restError) {
	n, set, err := o.integer("ttl")
	if err != nil || !set {
		return 0, set, err
	}
	return max(n, 0), true, nil
}

var modeBits = map[string]uint32{
	"NONE": 0, "EXECUTE": 1, "WRITE": 2, "WRITE_EXECUTE": 3,
	"READ": 4, "READ_EXECUTE": 5, "READ_WRITE": 6, "ALL": 7,
}

// mode reads a mode as Alluxio's {"ownerBits": "READ_WRITE", "groupBits":
// "READ", "otherBits": "READ"}, a number (420), or an octal string ("0644").
func (o options) mode() (m uint32, set bool, rerr *restError) {
	v, ok := o.get("mode")
	if !ok {
		return 0, false, nil
	}
	const want = `{"ownerBits": "READ_WRITE", "groupBits": "READ", "otherBits": "READ"}, a number, or an octal string`
	var n int64
	if json.Unmarshal(v, &n) == nil {
		if n < 0 || n > 0o7777 {
			return 0, false, badOption("mode", v, want)
		}
		return uint32(n), true, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
		if err != nil || n > 0o7777 {
			return 0, false, badOption("mode", v, want)
		}
		return uint32(n), true, nil
	}
	var obj map[string]string
	if json.Unmarshal(v, &obj) != nil {
		return 0, false, badOption("mode", v, want)
	}
	bits := map[string]string{}
	for k, val := range obj {
		bits[strings.ToLower(k)] = strings.ToUpper(strings.TrimSpace(val))
	}
	for i, k := range []string{"ownerbits", "groupbits", "otherbits"} {
		b, ok := modeBits[bits[k]]
		if !ok {
			return 0, false, badOption("mode", v, want)
		}
		m |= b << (3 * (2 - i))
	}
	return m, true, nil
}

// strMap reads a map of strings (mount properties).
func (o options) strMap(name string) (map[string]string, *restError) {
	v, ok := o.get(name)
	if !ok {
		return nil, nil
	}
	var m map[string]string
	if json.Unmarshal(v, &m) != nil {
		return nil, badOption(name, v, "an object of strings")
	}
	return m, nil
}
