package fsmaster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Permission bits of a mode's rwx triple.
const (
	permR = 4
	permW = 2
	permX = 1
)

// permConfig is how the namespace checks permissions (security.*).
type permConfig struct {
	enabled    bool
	superuser  string              // the system identity's user name
	supergroup string              // its members are superusers
	groups     map[string][]string // user → groups; the first is primary
}

func permConfigFrom(sec securityView) permConfig {
	pc := permConfig{enabled: sec.Permissions, superuser: sec.Superuser, supergroup: sec.Supergroup, groups: map[string][]string{}}
	for u, list := range sec.Groups {
		var gs []string
		for _, g := range strings.Split(list, ",") {
			if g = strings.TrimSpace(g); g != "" {
				gs = append(gs, g)
			}
		}
		if len(gs) > 0 {
			pc.groups[u] = gs
		}
	}
	return pc
}

// securityView is what the namespace reads of config.SecurityConfig.
type securityView struct {
	Permissions           bool
	Superuser, Supergroup string
	Groups                map[string]string
}

// principal is the caller as the namespace checks it.
type principal struct {
	user   string
	groups []string // the first is the group of what it creates
	super  bool
}

func (p principal) inGroup(g string) bool { return slices.Contains(p.groups, g) }

// caller returns the principal of a call: the identity the rpc layer
// established, or the superuser for an in-process call (no identity).
func (ns *namespace) caller(ctx context.Context) principal {
	id, ok := rpc.IdentityFrom(ctx)
	if !ok || id.System {
		return principal{user: ns.cfg.owner, groups: ns.superGroups, super: true}
	}
	pc := ns.cfg.perm
	u := id.User
	gs := pc.groups[u]
	if len(gs) == 0 {
		gs = []string{ns.primaryGroup(u)}
	}
	super := u == ns.cfg.owner || u == pc.superuser || pc.supergroup != "" && slices.Contains(gs, pc.supergroup)
	return principal{user: u, groups: gs, super: super}
}

// primaryGroup is the group user's new inodes get: the first of
// security.groups, else one named after the user.
func (ns *namespace) primaryGroup(user string) string {
	if gs := ns.cfg.perm.groups[user]; len(gs) > 0 {
		return gs[0]
	}
	if user == ns.cfg.owner {
		return ns.cfg.group
	}
	return user
}

// may reports whether p has every bit of want on n.
func (ns *namespace) may(p principal, n *inode, want uint32) bool {
	if p.super || !ns.cfg.perm.enabled {
		return true
	}
	var have uint32
	switch {
	case ns.st.owner(n) == p.user:
		have = n.mode() >> 6 & 7
	case p.inGroup(ns.st.group(n)):
		have = n.mode() >> 3 & 7
	default:
		have = n.mode() & 7
	}
	return have&want == want
}

func bitsName(want uint32) string {
	var b strings.Builder
	for _, c := range []struct {
		bit  uint32
		name string
	}{{permR, "read"}, {permW, "write"}, {permX, "execute"}} {
		if want&c.bit != 0 {
			if b.Len() > 0 {
				b.WriteString("+")
			}
			b.WriteString(c.name)
		}
	}
	return b.String()
}

// denied is the PermissionDenied error of op on path p: user lacks want on
// inode n.
func (ns *namespace) denied(op, p string, pr principal, n *inode, want uint32) error {
	return errf(codes.PermissionDenied, op, p, "permission denied: user %s needs %s on %s (owner %s, group %s, mode %04o)",
		pr.user, bitsName(want), ns.st.pathOf(n), ns.st.owner(n), ns.st.group(n), n.mode())
}

// need checks want on n. Call with ns.mu held.
func (ns *namespace) need(op, p string, pr principal, n *inode, want uint32) error {
	if ns.may(pr, n, want) {
		return nil
	}
	return ns.denied(op, p, pr, n, want)
}

// traverse checks execute on every directory above n (n excluded). Call
// with ns.mu held.
func (ns *namespace) traverse(op, p string, pr principal, n *inode) error {
	if pr.super || !ns.cfg.perm.enabled || n == nil {
		return nil
	}
	var chain []*inode
	for a := n.parent; a != nil; a = a.parent {
		chain = append(chain, a)
	}
	for i := len(chain) - 1; i >= 0; i-- { // from the root down
		if !ns.may(pr, chain[i], permX) {
			return ns.denied(op, p, pr, chain[i], permX)
		}
	}
	return nil
}

// missing is the error for the path p that does not exist (what names
// the call's paths in the message): NotFound — or the refusal to search
// the deepest directory of p that does exist, when the caller may not (as
// stat(2) answers EACCES there, not ENOENT): absence must not be learnt
// where presence would not be. Call with ns.mu held.
func (ns *namespace) missing(op, p, what string, pr principal, why string) error {
	if n, depth, comps := ns.st.lookupPrefix(p); n != nil && depth < len(comps) {
		var err error
		if n.dir() {
			err = ns.traverseTo(op, what, pr, n)
		} else {
			err = ns.traverse(op, what, pr, n)
		}
		if err != nil {
			return err
		}
	}
	return errf(codes.NotFound, op, what, "%s", why)
}

// traverseTo checks execute on n and everything above it: n is a directory
// a call goes through (the deepest existing ancestor of a new path).
func (ns *namespace) traverseTo(op, p string, pr principal, n *inode) error {
	if err := ns.traverse(op, p, pr, n); err != nil {
		return err
	}
	return ns.need(op, p, pr, n, permX)
}

// subtree checks want on every directory at or below n (files are not
// checked); it stops at the first refusal.
func (ns *namespace) subtree(op, p string, pr principal, n *inode, want uint32) error {
	if pr.super || !ns.cfg.perm.enabled {
		return nil
	}
	var err error
	walk(n, func(x *inode) bool {
		if err != nil {
			return false
		}
		if x.dir() && !ns.may(pr, x, want) {
			err = ns.denied(op, p, pr, x, want)
			return false
		}
		return true
	})
	return err
}

// ownerOrSuper allows a change only the owner (or a superuser) may make.
func (ns *namespace) ownerOrSuper(op, p string, pr principal, n *inode, what string) error {
	if pr.super || !ns.cfg.perm.enabled || ns.st.owner(n) == pr.user {
		return nil
	}
	return errf(codes.PermissionDenied, op, p, "permission denied: only the owner (%s) or a superuser may %s %s; user %s is neither", ns.st.owner(n), what, ns.st.pathOf(n), pr.user)
}

// superOnly allows op only to a superuser.
func (ns *namespace) superOnly(ctx context.Context, op, p string) error {
	pr := ns.caller(ctx)
	if pr.super || !ns.cfg.perm.enabled {
		return nil
	}
	return errf(codes.PermissionDenied, op, p, "permission denied: only a superuser (%s or group %s) may %s; user %s is not one", ns.cfg.perm.superuser, ns.cfg.perm.supergroup, op, pr.user)
}

// setattrAccess checks a SetAttribute on the inodes ids: mode needs the
// owner, owner needs a superuser, group the owner being in the new group,
// every other attribute write access. Call with ns.mu held.
func (ns *namespace) setattrAccess(op, p string, pr principal, req *api.SetAttributeRequest, ids []int64) error {
	if pr.super || !ns.cfg.perm.enabled {
		return nil
	}
	if req.Owner != nil {
		return errf(codes.PermissionDenied, op, p, "permission denied: only a superuser may change an owner (chown); user %s is not one", pr.user)
	}
	if req.Group != nil && !pr.inGroup(req.GetGroup()) {
		return errf(codes.PermissionDenied, op, p, "permission denied: user %s is not in group %s (only a superuser may give a file to a group its owner is not in)", pr.user, req.GetGroup())
	}
	other := req.Pinned != nil || req.PersistenceState != nil || req.ReplicationMin != nil || req.ReplicationMax != nil ||
		req.Ttl != nil || req.TtlAction != nil || req.UfsFingerprint != nil || req.GetPersistFrom() != "" || len(req.GetXattrs()) > 0
	for _, id := range ids {
		n := ns.st.get(id)
		if n == nil {
			continue
		}
		if req.Mode != nil || req.Group != nil {
			what := "chmod"
			if req.Mode == nil {
				what = "chgrp"
			}
			if err := ns.ownerOrSuper(op, p, pr, n, what); err != nil {
				return err
			}
		}
		if other {
			if err := ns.need(op, p, pr, n, permW); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckAccess implements the CheckAccess RPC.
func (ns *namespace) CheckAccess(ctx context.Context, req *api.CheckAccessRequest) error {
	const op = "access"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return err
	}
	want := req.GetBits()
	if want > 7 {
		return errf(codes.InvalidArgument, op, p, "bits %d: want 0..7 (4 read, 2 write, 1 execute)", want)
	}
	if err := ns.ensureLoaded(ctx, p, api.LoadMetadataType_ONCE); err != nil {
		return err
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return err
	}
	pr := ns.caller(ctx)
	n, depth, comps := ns.st.lookupPrefix(p)
	if depth < len(comps) {
		return ns.missing(op, p, p, pr, "no such file or directory")
	}
	if err := ns.traverse(op, p, pr, n); err != nil {
		return err
	}
	if err := ns.need(op, p, pr, n, want); err != nil {
		return err
	}
	if !req.GetRecursive() || !n.dir() {
		return nil
	}
	dirWant := want | permR | permX
	fileWant := want &^ permX
	var verr error
	walk(n, func(x *inode) bool {
		if verr != nil || ctx.Err() != nil {
			return false
		}
		w := fileWant
		if x.dir() {
			w = dirWant
		}
		if !ns.may(pr, x, w) {
			verr = ns.denied(op, p, pr, x, w)
			return false
		}
		return true
	})
	if verr != nil {
		return verr
	}
	return ctx.Err()
}

// clean validates a path argument within the configured path limits.
func (ns *namespace) clean(op, p string) (string, error) {
	c, err := ns.cfg.pathLimits.Clean(p)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "%s: %v", op, err)
	}
	return c, nil
}

// gate bounds the expensive calls running at once
// (fsmaster.max-expensive-calls); one more waits up to wait, then is
// refused with ResourceExhausted, so overload slows callers down instead
// of taking the master down.
type gate struct {
	slots chan struct{}
	wait  time.Duration
}

func newGate(n int, wait time.Duration) *gate {
	if n <= 0 {
		return nil
	}
	return &gate{slots: make(chan struct{}, n), wait: wait}
}

// enter takes a slot; the returned func gives it back.
func (g *gate) enter(ctx context.Context, op, p string) (func(), error) {
	if g == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("%s %s: the FS master is busy (%d expensive calls running, fsmaster.max-expensive-calls); retry later", op, p, cap(g.slots)))
	}
}

// pathLimitsFrom is the configured path limits.
func pathLimitsFrom(maxLen, maxDepth int) paths.Limits {
	return paths.Limits{MaxLength: maxLen, MaxDepth: maxDepth}
}

// AuthorizeBlockAccess decides whether the caller's user may read (or, with
// write, write) the blocks of file id: block workers ask before serving a
// data call from anyone but the cluster itself, since a block id alone
// names no path the worker could check.
func (ns *namespace) AuthorizeBlockAccess(ctx context.Context, req *api.AuthorizeBlockAccessRequest) (*api.FileInfo, error) {
	const op = "block access"
	ns.op(op)
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return nil, err
	}
	n := ns.st.get(req.GetFileId())
	if n == nil || n.dir() {
		return nil, status.Errorf(codes.NotFound, "%s: file id %d: no such file", op, req.GetFileId())
	}
	p := ns.st.pathOf(n)
	pr := ns.caller(ctx)
	if err := ns.traverse(op, p, pr, n); err != nil {
		return nil, err
	}
	if req.GetWrite() {
		if n.completed() {
			return nil, errf(codes.FailedPrecondition, op, p, "the file is complete: its blocks can no longer be written")
		}
		if ns.st.owner(n) != pr.user {
			if err := ns.need(op, p, pr, n, permW); err != nil {
				return nil, err
			}
		}
	} else if err := ns.need(op, p, pr, n, permR); err != nil {
		return nil, err
	}
	return ns.info(n, p, false), nil
}
