package planplugin

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// A failed task's answer carries its result, whatever error the plugin
// returned: a plain one, a status, a status wrapped with %w (which once
// panicked the plugin process), a context's.
func TestFailedRunCarriesTheResult(t *testing.T) {
	resp := &api.PluginRunResponse{Bytes: 7, Failed: []*api.FailedPath{{Path: "/a", Error: "bad"}}, Output: []byte(`{"x":1}`)}
	for _, c := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{errors.New("plain"), codes.Unknown, "plain"},
		{status.Error(codes.NotFound, "/a: gone"), codes.NotFound, "/a: gone"},
		{fmt.Errorf("checksum /a: %w", status.Error(codes.PermissionDenied, "denied")), codes.PermissionDenied, "checksum /a: rpc error: code = PermissionDenied desc = denied"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "read: context deadline exceeded"},
	} {
		out := taskOut(3, resp, c.err)
		if codes.Code(out.GetCode()) != c.code || out.GetError() != c.msg || out.GetSeq() != 3 {
			t.Errorf("%v: got %v %q, want %v %q", c.err, codes.Code(out.GetCode()), out.GetError(), c.code, c.msg)
		}
		if got := out.GetResult(); got.GetBytes() != 7 || len(got.GetFailed()) != 1 || string(got.GetOutput()) != `{"x":1}` {
			t.Errorf("%v: result %v, want the task's", c.err, got)
		}
	}
}

// Holder picks the block worker caching most of a file's bytes (a tie:
// the lowest id), with its address; none when no block is cached.
func TestHolder(t *testing.T) {
	loc := func(id int64, host string) *api.BlockLocation {
		return &api.BlockLocation{WorkerId: id, Address: &api.WorkerNetAddress{Host: host, RpcPort: int32(id)}}
	}
	block := func(n int64, ls ...*api.BlockLocation) *api.FileBlockInfo {
		return &api.FileBlockInfo{BlockInfo: &api.BlockInfo{Length: n, Locations: ls}}
	}
	for _, c := range []struct {
		name   string
		blocks []*api.FileBlockInfo
		id     int64
		addr   string
	}{
		{"none cached", []*api.FileBlockInfo{block(10)}, 0, ""},
		{"no blocks", nil, 0, ""},
		{"one", []*api.FileBlockInfo{block(10, loc(7, "h7"))}, 7, "h7:7"},
		{"most bytes", []*api.FileBlockInfo{block(10, loc(3, "h3"), loc(5, "h5")), block(20, loc(5, "h5"))}, 5, "h5:5"},
		{"tie: lowest id", []*api.FileBlockInfo{block(10, loc(9, "h9")), block(10, loc(4, "h4"))}, 4, "h4:4"},
		{"empty block counts", []*api.FileBlockInfo{block(0, loc(2, "h2"))}, 2, "h2:2"},
		{"no address", []*api.FileBlockInfo{block(10, &api.BlockLocation{WorkerId: 1})}, 0, ""},
		{"many", []*api.FileBlockInfo{block(1, loc(1, "a")), block(1, loc(2, "b")), block(1, loc(3, "c")), block(1, loc(4, "d")), block(1, loc(5, "e")), block(2, loc(6, "f"))}, 6, "f:6"},
	} {
		id, addr := Holder(&api.FileInfo{FileBlockInfos: c.blocks})
		if id != c.id || addr != c.addr {
			t.Errorf("%s: Holder = %d %q, want %d %q", c.name, id, addr, c.id, c.addr)
		}
	}
}

// The host connection's buffer pool hands out buffers of the length asked
// for, in power-of-two classes it reuses; buffers of other capacities, and
// ones past its biggest class, are not kept.
func TestDirtyPool(t *testing.T) {
	p := &dirtyPool{}
	for _, n := range []int{0, 1, 4096, 4097, 300 << 10, 1 << 20, 16 << 20, 16<<20 + 1} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d): len %d", n, len(*b))
		}
		if n <= 16<<20 && (cap(*b) < n || cap(*b)&(cap(*b)-1) != 0 || cap(*b) < 4096) {
			t.Fatalf("Get(%d): cap %d, want a power of two of at least 4 KiB", n, cap(*b))
		}
		p.Put(b)
	}
	b := p.Get(5000)
	(*b)[0] = 7
	p.Put(b)
	// sync.Pool may drop what it holds at any time: reuse is not asserted,
	// only that what comes back is sound.
	if c := p.Get(6000); len(*c) != 6000 || cap(*c) != 8192 {
		t.Fatalf("Get(6000) after a Put of 8 KiB: len %d cap %d", len(*c), cap(*c))
	}
	odd := make([]byte, 5000)
	p.Put(&odd) // not a class's capacity: dropped
	if c := p.Get(5000); cap(*c) != 8192 {
		t.Fatalf("a foreign buffer came back: cap %d", cap(*c))
	}
}
