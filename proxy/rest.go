package proxy

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

// restAPI serves /api/v1/paths and /api/v1/streams over the SDK. Every
// call acts as its caller: the request context carries the user (see
// callerOf), and a stream, which outlives its request, keeps acting as the
// user who opened it.
type restAPI struct {
	c       *sdk.Client
	streams *streamTable
	// ctx outlives requests: streams opened by one call are used by later
	// calls. It is the proxy's own (the cluster's) identity: only ever use
	// it through streamCtx.
	ctx context.Context
	log *zap.Logger
	m   *metrics
}

type callerKey struct{}

// withCaller records the user a REST request authenticated as ("" for the
// cluster token) in its context, and makes the SDK act for that user.
func withCaller(ctx context.Context, user string) context.Context {
	return sdk.AsUser(context.WithValue(ctx, callerKey{}, user), user)
}

// callerOf is the user a request authenticated as ("": the cluster token).
func callerOf(ctx context.Context) string {
	u, _ := ctx.Value(callerKey{}).(string)
	return u
}

// streamCtx is the context of a stream opened by the request with ctx: it
// outlives the request and acts as its caller.
func (a *restAPI) streamCtx(ctx context.Context) context.Context {
	return sdk.AsUser(a.ctx, callerOf(ctx))
}

// servePaths handles POST /api/v1/paths/{path}/{action} (GET for
// download-file).
func (a *restAPI) servePaths(w http.ResponseWriter, r *http.Request, rt route) error {
	if rt.action == "download-file" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return methodNotAllowed(w, r, "GET")
		}
		return a.download(w, r, rt.path)
	}
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, r, "POST")
	}
	o, rerr := readOptions(r.Body)
	if rerr != nil {
		return rerr
	}
	ctx := r.Context()
	p := rt.path
	switch rt.action {
	case "create-directory":
		return a.createDirectory(ctx, w, p, o)
	case "create-file":
		return a.createFile(ctx, w, p, o)
	case "delete":
		recursive, err := o.boolean("recursive")
		if err != nil {
			return err
		}
		alluxioOnly, err := o.boolean("alluxioOnly")
		if err != nil {
			return err
		}
		if e := a.c.Delete(ctx, p, sdk.DeleteOptions{Recursive: recursive, AlluviumOnly: alluxioOnly}); e != nil {
			return e
		}
		writeVoid(w)
	case "exists":
		lt, err := o.loadMetadataType()
		if err != nil {
			return err
		}
		_, e := a.c.StatWith(ctx, p, lt)
		switch {
		case e == nil:
			writeJSON(w, http.StatusOK, true)
		case errors.Is(e, sdk.ErrNotFound):
			writeJSON(w, http.StatusOK, false)
		default:
			return e
		}
	case "free":
		recursive, err := o.boolean("recursive")
		if err != nil {
			return err
		}
		forced, err := o.boolean("forced")
		if err != nil {
			return err
		}
		force, err := o.boolean("force")
		if err != nil {
			return err
		}
		if _, e := a.c.Free(ctx, p, sdk.FreeOptions{Recursive: recursive, Force: forced || force}); e != nil {
			return e
		}
		writeVoid(w)
	case "get-status":
		lt, err := o.loadMetadataType()
		if err != nil {
			return err
		}
		info, e := a.c.StatWith(ctx, p, lt)
		if e != nil {
			return e
		}
		writeJSON(w, http.StatusOK, toStatus(info))
	case "list-status":
		return a.listStatus(ctx, w, p, o)
	case "mount":
		src := r.URL.Query().Get("src")
		if src == "" {
			return restErrorf(codes.InvalidArgument, "mount %s: required 'src' parameter is missing", p)
		}
		props, err := o.strMap("properties")
		if err != nil {
			return err
		}
		ro, err := o.boolean("readOnly")
		if err != nil {
			return err
		}
		shared, err := o.boolean("shared")
		if err != nil {
			return err
		}
		if _, e := a.c.Mount(ctx, p, src, sdk.MountOptions{Options: props, ReadOnly: ro, Shared: shared}); e != nil {
			return e
		}
		writeVoid(w)
	case "open-file":
		return a.openFile(ctx, w, p, o)
	case "rename":
		dst := r.URL.Query().Get("dst")
		if dst == "" {
			return restErrorf(codes.InvalidArgument, "rename %s: required 'dst' parameter is missing", p)
		}
		d, err := cleanPath(dst)
		if err != nil {
			return err
		}
		if _, e := a.c.Rename(ctx, p, d); e != nil {
			return e
		}
		writeVoid(w)
	case "set-attribute":
		return a.setAttribute(ctx, w, p, o)
	case "unmount":
		if e := a.c.Unmount(ctx, p); e != nil {
			return e
		}
		writeVoid(w)
	}
	return nil
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed string) error {
	w.Header().Set("Allow", allowed)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{
		"statusCode": statusName(codes.Unimplemented),
		"message":    r.Method + " " + r.URL.Path + ": use " + allowed,
	})
	return nil
}

func (a *restAPI) createDirectory(ctx context.Context, w http.ResponseWriter, p string, o options) error {
	recursive, err := o.boolean("recursive")
	if err != nil {
		return err
	}
	allowExists, err := o.boolean("allowExists")
	if err != nil {
		return err
	}
	wt, err := o.writeType()
	if err != nil {
		return err
	}
	mode, _, err := o.mode()
	if err != nil {
		return err
	}
	if _, e := a.c.Mkdir(ctx, p, sdk.MkdirOptions{Parents: recursive, AllowExists: allowExists, Mode: mode, WriteType: wt}); e != nil {
		return e
	}
	writeVoid(w)
	return nil
}

func (a *restAPI) createFile(ctx context.Context, w http.ResponseWriter, p string, o options) error {
	var co sdk.CreateOptions
	var err *restError
	if co.WriteType, err = o.writeType(); err != nil {
		return err
	}
	if co.BlockSize, _, err = o.integer("blockSizeBytes"); err != nil {
		return err
	}
	if co.BlockSize < 0 {
		return restErrorf(codes.InvalidArgument, "create-file %s: blockSizeBytes %d is negative", p, co.BlockSize)
	}
	if co.Recursive, err = o.boolean("recursive"); err != nil {
		return err
	}
	if co.Overwrite, err = o.boolean("overwrite"); err != nil {
		return err
	}
	if co.Pinned, err = o.boolean("pinned"); err != nil {
		return err
	}
	if co.Mode, _, err = o.mode(); err != nil {
		return err
	}
	if co.TTL, _, err = o.ttl(); err != nil {
		return err
	}
	if co.TTLAction, err = o.ttlAction(); err != nil {
		return err
	}
	if co.ReplicationMin, _, err = o.int32("replicationMin", 0); err != nil {
		return err
	}
	if co.ReplicationMax, _, err = o.int32("replicationMax", -1); err != nil {
		return err
	}
	user := callerOf(ctx)
	if err := a.streams.reserve(user); err != nil {
		return err
	}
	fw, e := a.c.Create(a.streamCtx(ctx), p, co)
	if e != nil {
		a.streams.unreserve(user)
		return e
	}
	id := a.streams.add(&stream{owner: user, path: p, w: fw})
	writeJSON(w, http.StatusOK, id)
	return nil
}

func (a *restAPI) openFile(ctx context.Context, w http.ResponseWriter, p string, o options) error {
	rt, err := o.readType()
	if err != nil {
		return err
	}
	user := callerOf(ctx)
	if err := a.streams.reserve(user); err != nil {
		return err
	}
	fr, e := a.c.Open(a.streamCtx(ctx), p, sdk.OpenOptions{ReadType: rt})
	if e != nil {
		a.streams.unreserve(user)
		return e
	}
	id := a.streams.add(&stream{owner: user, path: p, r: fr})
	writeJSON(w, http.StatusOK, id)
	return nil
}

// listStatus writes the children of p as one JSON array, encoding page by
// page as they come so a big directory is never held whole.
func (a *restAPI) listStatus(ctx context.Context, w http.ResponseWriter, p string, o options) error {
	lt, err := o.loadMetadataType()
	if err != nil {
		return err
	}
	recursive, err := o.boolean("recursive")
	if err != nil {
		return err
	}
	var next func() (*sdk.FileInfo, bool, error)
	var stop func()
	if recursive {
		next, stop = pull(a.c.List(ctx, p, sdk.ListOptions{Recursive: true, IncludeBlocks: true}))
	} else {
		next, stop = pull(a.c.ListFrom(ctx, p, sdk.ListFromOptions{IncludeBlocks: true, LoadMetadataType: lt}))
	}
	defer stop()
	first, ok, e := next()
	if e != nil {
		return e
	}
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(http.StatusOK)
	enc := newArrayEncoder(w)
	for ok {
		if err := enc.add(toStatus(first)); err != nil {
			return nil // the client went away
		}
		first, ok, e = next()
		if e != nil {
			// The status line is out: cut the array short so the client's
			// JSON decoder fails rather than see a partial listing whole.
			a.log.Warn("list-status failed mid-listing", zap.String("path", p), zap.Error(e))
			return nil
		}
	}
	enc.end()
	return nil
}

func (a *restAPI) setAttribute(ctx context.Context, w http.ResponseWriter, p string, o options) error {
	req := &api.SetAttributeRequest{Path: p}
	var err *restError
	if req.Recursive, err = o.boolean("recursive"); err != nil {
		return err
	}
	if req.Pinned, err = o.optBool("pinned"); err != nil {
		return err
	}
	if s, set, err := o.str("owner"); err != nil {
		return err
	} else if set {
		req.Owner = &s
	}
	if s, set, err := o.str("group"); err != nil {
		return err
	} else if set {
		req.Group = &s
	}
	if m, set, err := o.mode(); err != nil {
		return err
	} else if set {
		req.Mode = &m
	}
	if ttl, set, err := o.ttl(); err != nil {
		return err
	} else if set {
		req.Ttl = &ttl
	}
	if act, err := o.ttlAction(); err != nil {
		return err
	} else if act != "" {
		req.TtlAction = &act
	}
	for _, k := range []struct {
		name string
		min  int64
		dst  **int32
	}{{"replicationMin", 0, &req.ReplicationMin}, {"replicationMax", -1, &req.ReplicationMax}} {
		if n, set, err := o.int32(k.name, k.min); err != nil {
			return err
		} else if set {
			*k.dst = &n
		}
	}
	if persisted, err := o.boolean("persisted"); err != nil {
		return err
	} else if persisted {
		return restErrorf(codes.InvalidArgument, "set-attribute %s: persisted=true cannot be set; persist the bytes with a persist job (POST /api/v1/jobs {\"plan\": \"persist\", ...})", p)
	}
	if _, e := a.c.SetAttribute(ctx, req); e != nil {
		return e
	}
	writeVoid(w)
	return nil
}

// download streams a whole file (GET .../download-file).
func (a *restAPI) download(w http.ResponseWriter, r *http.Request, p string) error {
	fr, err := a.c.Open(r.Context(), p, sdk.OpenOptions{})
	if err != nil {
		return err
	}
	defer fr.Close()
	info := fr.Info()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": info.GetName()}))
	w.Header().Set("Content-Length", strconv.FormatInt(info.GetLength(), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	n, err := io.Copy(w, fr)
	a.m.bytesOut.WithLabelValues("rest").Add(float64(n))
	if err != nil {
		a.log.Debug("download-file cut short", zap.String("path", p), zap.Int64("bytes", n), zap.Error(err))
	}
	return nil
}

// serveStreams handles POST /api/v1/streams/{id}/read|write|close.
func (a *restAPI) serveStreams(w http.ResponseWriter, r *http.Request, rt route) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, r, "POST")
	}
	caller := callerOf(r.Context())
	if rt.action == "close" {
		s, err := a.streams.remove(rt.id, caller)
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.w != nil {
			if e := s.w.Close(); e != nil {
				return e
			}
		} else {
			_ = s.r.Close()
		}
		writeVoid(w)
		return nil
	}
	s, err := a.streams.acquire(rt.id, caller)
	if err != nil {
		return err
	}
	defer a.streams.release(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch rt.action {
	case "write":
		if s.w == nil {
			return wrongKind(s, "write")
		}
		n, e := io.Copy(s.w, r.Body)
		a.m.bytesIn.WithLabelValues("rest").Add(float64(n))
		if e != nil {
			return e
		}
		writeJSON(w, http.StatusOK, n)
	case "read":
		if s.r == nil {
			return wrongKind(s, "read")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if rest := s.r.Length() - mustSeek(s.r); rest >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(rest, 10))
		}
		w.WriteHeader(http.StatusOK)
		n, e := io.Copy(w, s.r)
		a.m.bytesOut.WithLabelValues("rest").Add(float64(n))
		if e != nil {
			a.log.Debug("stream read cut short", zap.Int64("stream", s.id), zap.String("path", s.path), zap.Error(e))
		}
	}
	return nil
}

// mustSeek returns a reader's position.
func mustSeek(r *sdk.FileReader) int64 {
	pos, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0
	}
	return pos
}
