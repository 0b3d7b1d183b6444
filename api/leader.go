package api

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// LeaderTrailer is the gRPC response trailer a master that does not lead
// sets on the Unavailable answer to a call it did not execute: the leader's
// rpc address (host:port), or empty when it knows no leader. A client may
// send such a call again to the leader, whatever the call was (CONTRACTS.md,
// contract 1; internal/client follows it).
const LeaderTrailer = "alluvium-leader"

// NotLeaderError is how a master that does not lead refuses a call in a
// server handler: it sets LeaderTrailer to leader ("" when unknown) on the
// call's trailer and returns Unavailable naming op and the leader.
func NotLeaderError(ctx context.Context, op, leader string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderTrailer, leader))
	if leader == "" {
		return status.Errorf(codes.Unavailable, "%s: this master does not lead and knows no leader yet (retry)", op)
	}
	return status.Errorf(codes.Unavailable, "%s: this master does not lead; the leader is %s", op, leader)
}
