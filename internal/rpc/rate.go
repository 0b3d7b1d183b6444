package rpc

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"
)

// RateHeader is the request metadata of a call whose bytes a block worker
// throttles as they flow: "<key> <bytes per second>", the key naming the
// budget the call draws from (a job's share on the job worker that makes
// the call). Every call a task makes carries it (WithRate), read at the
// time of the call, so a share the job master changes while the task runs
// applies from the task's next call on. A block worker honours it only
// from the cluster's own processes (RateOf).
const RateHeader = "alluvium-rate"

type rateCtxKey struct{}

type rateSource struct {
	key string
	bps func() int64
}

// WithRate makes every call on ctx (through a connection of Dial) carry
// RateHeader naming key and bps() as it is when the call starts; a call
// made while bps() <= 0 carries none.
func WithRate(ctx context.Context, key string, bps func() int64) context.Context {
	return context.WithValue(ctx, rateCtxKey{}, rateSource{key: key, bps: bps})
}

// WithoutRate makes the calls on ctx draw from no budget: for a call that
// moves bytes an earlier call already counted (a copy assembling parts it
// fetched under the job's budget).
func WithoutRate(ctx context.Context) context.Context {
	return context.WithValue(ctx, rateCtxKey{}, rateSource{})
}

// Rated says whether calls on ctx may draw from a budget (WithRate, with
// a share that may be > 0 at the time of a call): such calls are a task's
// own and may not be merged with another's.
func Rated(ctx context.Context) bool {
	src, ok := ctx.Value(rateCtxKey{}).(rateSource)
	return ok && src.bps != nil
}

// withRateHeader adds RateHeader to an outgoing call of ctx (Dial's
// interceptors).
func withRateHeader(ctx context.Context) context.Context {
	src, ok := ctx.Value(rateCtxKey{}).(rateSource)
	if !ok || src.bps == nil {
		return ctx
	}
	v := src.bps()
	if v <= 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, RateHeader, src.key+" "+strconv.FormatInt(v, 10))
}

// RateOf is the budget an incoming call draws from: its RateHeader, when
// the caller is the cluster's own (a user may not throttle another's job).
func RateOf(ctx context.Context) (key string, bps int64, ok bool) {
	if id, known := IdentityFrom(ctx); !known || !id.Trusted() {
		return "", 0, false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(RateHeader)
	if len(v) == 0 {
		return "", 0, false
	}
	key, n, found := strings.Cut(v[len(v)-1], " ")
	bps, err := strconv.ParseInt(n, 10, 64)
	if !found || key == "" || err != nil || bps <= 0 {
		return "", 0, false
	}
	return key, bps, true
}
