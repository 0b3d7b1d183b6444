package fsmaster

import (
	"context"
	"math"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// TTL actions (FileInfo.ttl_action); an empty action is DELETE, as in
// Alluxio.
const (
	ttlFree   = "FREE"
	ttlDelete = "DELETE"
)

// maxTimeMs is the last millisecond of the year 9999 (UTC): a TTL may not
// end later, so creation time + TTL always fits an int64 with room to spare.
const maxTimeMs = 253402300799999

// ttlEnd is when a TTL set on an inode created at ctime runs out,
// saturating instead of overflowing (a TTL of an old journal may be huge).
func ttlEnd(ctime, ttl int64) int64 {
	if ttl > 0 && ctime > math.MaxInt64-ttl {
		return math.MaxInt64
	}
	return ctime + ttl
}

// checkTTLEnd refuses a TTL that would end after the year 9999 on any of
// the inodes ids. Call with ns.mu held.
func (ns *namespace) checkTTLEnd(op, p string, ttl int64, ids []int64) error {
	for _, id := range ids {
		if n := ns.st.get(id); n != nil && ttlEnd(n.ctime, ttl) > maxTimeMs {
			return errf(codes.InvalidArgument, op, p, "ttl %d ms ends after the year 9999 (%s was created at %d ms)", ttl, ns.st.pathOf(n), n.ctime)
		}
	}
	return nil
}

// expired is an inode whose TTL has run out.
type expired struct {
	path   string
	action string
}

// ttlLoop acts on expired TTLs every fsmaster.ttl-check-interval: an inode
// whose creation time plus TTL has passed is freed from the cache (FREE; its
// TTL is then cleared so it is not freed again) or deleted, subtree and UFS
// included (DELETE).
func (m *Master) ttlLoop(ctx context.Context) {
	m.tick(ctx, m.cfg.FSMaster.TTLCheckInterval, time.Minute, func() { m.ns.expireTTLs(ctx, m.ns.now(), m.log) })
}

// expireTTLs acts on every TTL expired at now and reports how many it did.
func (ns *namespace) expireTTLs(ctx context.Context, now time.Time, log *zap.Logger) int {
	done := 0
	for _, e := range ns.expiredTTLs(now.UnixMilli()) {
		var err error
		switch e.action {
		case ttlFree:
			if _, err = ns.Free(ctx, &api.FreeRequest{Path: e.path, Recursive: true}); err == nil {
				_, err = ns.SetAttribute(ctx, &api.SetAttributeRequest{Path: e.path, Ttl: proto.Int64(0)})
			}
		default:
			err = ns.Delete(ctx, &api.DeleteRequest{Path: e.path, Recursive: true})
		}
		if err != nil {
			// An unpersisted file is not freed (its only copy is the
			// cache); it is tried again at the next check.
			log.Warn("ttl expired; acting on it failed", zap.String("path", e.path), zap.String("action", e.action), zap.Error(err))
			continue
		}
		done++
		log.Info("ttl expired", zap.String("path", e.path), zap.String("action", e.action))
	}
	return done
}

// expiredTTLs lists the inodes whose TTL has run out at nowMs, parents
// before their children; a child of an inode being deleted is left out.
func (ns *namespace) expiredTTLs(nowMs int64) []expired {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	var out []expired
	for _, n := range ns.st.ttls { // only inodes with a TTL
		ttl, action := ns.st.ttl(n)
		if ttlEnd(n.ctime, ttl) > nowMs || n.parent == nil {
			continue
		}
		if action != ttlFree {
			action = ttlDelete
		}
		out = append(out, expired{path: ns.st.pathOf(n), action: action})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	// A deleted directory takes its subtree with it.
	kept := out[:0]
	var deleting []string
	for _, e := range out {
		if slices.ContainsFunc(deleting, func(d string) bool { return paths.IsAncestor(d, e.path) }) {
			continue
		}
		if e.action == ttlDelete {
			deleting = append(deleting, e.path)
		}
		kept = append(kept, e)
	}
	return kept
}
