package jobmaster

import (
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// Submits of one user under way count against its bound together with its
// unfinished jobs; each holds its place only until released.
func TestInFlightReservations(t *testing.T) {
	cfg := testConfigFor(t)
	cfg.JobMaster.Job.MaxInFlightPerUser = 2
	s := &Server{cfg: cfg, fsm: NewFSM(nil), submitting: map[string]int{}}
	r1, err := s.reserveInFlight("alice", "load")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.reserveInFlight("alice", "load")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.reserveInFlight("alice", "load"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third submit under way: %v", err)
	}
	if err := s.checkInFlight("alice", "load"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("check with two under way: %v", err)
	}
	if r, err := s.reserveInFlight("bob", "load"); err != nil {
		t.Fatalf("another user: %v", err)
	} else {
		r()
	}
	r1()
	r3, err := s.reserveInFlight("alice", "load")
	if err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	// Its job now exists (unfinished) and the reservation ends: still two.
	buf, _ := encodeCommand(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RunAs: "alice", NowMs: 1})
	s.fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: buf})
	r3()
	if _, err := s.reserveInFlight("alice", "load"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("one unfinished job and one submit under way: %v", err)
	}
	r2()
	if _, err := s.reserveInFlight("", "load"); err != nil {
		t.Fatalf("the system identity is not bound: %v", err)
	}
}
