package proxy

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// TestStreamTable: ids are random integers a JSON double holds exactly,
// a stream answers only its owner (others get not-found, as for a stream
// that never existed), and each owner may hold at most the cap; closing or
// expiring one gives its slot back.
func TestStreamTable(t *testing.T) {
	tb := newStreamTable(time.Minute, 3, zap.NewNop(), nil)
	seen := map[int64]bool{}
	var ids []int64
	for range 3 {
		if err := tb.reserve("alice"); err != nil {
			t.Fatal(err)
		}
		id := tb.add(&stream{owner: "alice", path: "/f"})
		if id <= 0 || id > maxStreamID || seen[id] {
			t.Fatalf("stream id %d: want a new id in [1, 2^53)", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if ids[1] == ids[0]+1 && ids[2] == ids[1]+1 {
		t.Fatalf("stream ids %v are sequential", ids)
	}
	err := tb.reserve("alice")
	if err == nil || err.code != codes.ResourceExhausted {
		t.Fatalf("a 4th stream of alice: %v, want ResourceExhausted", err)
	}
	if err := tb.reserve("bob"); err != nil {
		t.Fatalf("bob's first stream while alice is at her cap: %v", err)
	}
	tb.unreserve("bob")
	for _, who := range []string{"bob", ""} {
		if _, err := tb.acquire(ids[0], who); err == nil || err.code != codes.NotFound {
			t.Fatalf("%q acquires alice's stream: %v, want NotFound", who, err)
		}
		if _, err := tb.remove(ids[0], who); err == nil || err.code != codes.NotFound {
			t.Fatalf("%q closes alice's stream: %v, want NotFound", who, err)
		}
	}
	s, err := tb.acquire(ids[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	tb.release(s)
	if _, err := tb.remove(ids[0], "alice"); err != nil {
		t.Fatal(err)
	}
	if err := tb.reserve("alice"); err != nil {
		t.Fatalf("a stream after closing one: %v", err)
	}
	tb.unreserve("alice")
	if n := tb.expire(time.Now().Add(2 * time.Minute)); n != 2 {
		t.Fatalf("expired %d streams, want 2", n)
	}
	if len(tb.perUser) != 0 {
		t.Fatalf("slots held after every stream expired: %v", tb.perUser)
	}
}
