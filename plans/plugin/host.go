package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/sdk/planplugin"
)

// The task-scoped client. Each plugin process gets one PlanHost server, on
// a go-plugin broker stream of its own for the process's life; every call
// to the plugin names it (host_id) and carries a new random token
// (planplugin.CallHeader; each task of a RunTasks batch has its own),
// which the plugin sends back with each request. The server answers only
// requests with the token of a call or task under way on that process, so
// a request from one that has ended is refused, and each acts for the
// user of its call's context (the job's user, rpc.ActAs) through this
// process's client: the plugin gets what that user may do, and only the
// few calls a plan needs — never the cluster's token, never a connection
// of its own to the cluster. (A server and connection per call, as
// before, cost more than a no-op task itself: docs/profiles/plugin.)

// readChunk is how many bytes one ReadFile message carries.
const readChunk = 1 << 20

// maxListPage bounds a List page.
const maxListPage = 10000

// serveHost serves a process's PlanHost on a new broker stream and
// returns it, its id and the function that stops it.
func serveHost(b *goplugin.GRPCBroker, pages *pagesAhead) (*hostServer, uint32, func()) {
	h := &hostServer{pages: pages}
	id := b.NextId()
	srv := make(chan *grpc.Server, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(opts...)
			api.RegisterPlanHostServer(s, h)
			srv <- s
			return s
		})
	}()
	return h, id, func() {
		select {
		case s := <-srv:
			s.Stop()
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}

type hostServer struct {
	api.UnimplementedPlanHostServer
	pages *pagesAhead // the plugin's listing pages asked for ahead (nil: none)
	mu    sync.Mutex
	calls map[string]*hostCall // the calls and tasks under way, by token
}

// hostCall is one call to the plugin (or one task of a batch) as its host
// requests see it.
type hostCall struct {
	token    string
	ctx      context.Context // the call's: its user, and its end
	env      plans.Env
	progress func(int64)
}

// begin makes a call one that h serves and returns its token and the
// function that ends it.
func (h *hostServer) begin(ctx context.Context, env plans.Env, progress func(int64)) (string, func()) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	c := &hostCall{token: hex.EncodeToString(b[:]), ctx: ctx, env: env, progress: progress}
	h.mu.Lock()
	if h.calls == nil {
		h.calls = map[string]*hostCall{}
	}
	h.calls[c.token] = c
	h.mu.Unlock()
	return c.token, func() {
		h.mu.Lock()
		delete(h.calls, c.token)
		h.mu.Unlock()
	}
}

// call is the call in's request belongs to, or PermissionDenied when its
// token names none under way.
func (h *hostServer) call(in context.Context) (*hostCall, error) {
	md, _ := metadata.FromIncomingContext(in)
	var c *hostCall
	if v := md.Get(planplugin.CallHeader); len(v) == 1 {
		h.mu.Lock()
		c = h.calls[v[0]]
		h.mu.Unlock()
	}
	if c == nil {
		return nil, status.Error(codes.PermissionDenied, "plan plugin host: this request's call has ended (or it names none)")
	}
	return c, nil
}

// as is the call of in's request and a context acting for its user: in's
// cancellation (the plugin gave up on the call) and the call's values
// (rpc.ActAs).
func (h *hostServer) as(in context.Context) (*hostCall, context.Context, context.CancelFunc, error) {
	c, err := h.call(in)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.ctx))
	stop1 := context.AfterFunc(in, cancel)
	stop2 := context.AfterFunc(c.ctx, cancel)
	return c, ctx, func() { stop1(); stop2(); cancel() }, nil
}

func cleanPath(p string) (string, error) {
	c, err := paths.Clean(p)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "%s: %v", p, err)
	}
	return c, nil
}

func (h *hostServer) Stat(in context.Context, req *api.HostStatRequest) (*api.HostStatResponse, error) {
	c, ctx, cancel, err := h.as(in)
	if err != nil {
		return nil, err
	}
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	r, err := c.env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: p})
	if err != nil {
		return nil, err
	}
	return &api.HostStatResponse{Info: r.GetInfo()}, nil
}

func (h *hostServer) List(in context.Context, req *api.HostListRequest) (*api.HostListResponse, error) {
	c, ctx, cancel, err := h.as(in)
	if err != nil {
		return nil, err
	}
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	key := pageKey{user: rpc.ActingAs(c.ctx), path: p, token: req.GetPageToken(), size: min(max(req.GetPageSize(), 0), maxListPage), recursive: req.GetRecursive()}
	raw, err := h.pages.take(ctx, key)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		if raw, err = listRaw(ctx, c.env, key); err != nil {
			return nil, err
		}
	}
	if next := nextPageToken(raw); next != "" {
		// The page after this one, asked for now (as the built-in walk
		// lists ahead): the plugin plans this one meanwhile.
		k := key
		k.token = next
		h.pages.ask(c.ctx, c.env, k)
	}
	return &api.HostListResponse{Listing: raw}, nil
}

// listRaw lists key's page as the FS master sent it, undecoded: a page of
// a thousand files with their blocks costs more to decode and encode
// again than anything else the host does for a plugin
// (docs/profiles/plugin), so the plugin gets the FS master's bytes.
func listRaw(ctx context.Context, env plans.Env, key pageKey) ([]byte, error) {
	raw := &rawListing{fallback: encoding.GetCodecV2("proto")}
	if _, err := env.FS().ListStatus(ctx, &api.ListStatusRequest{Path: key.path, Recursive: key.recursive, PageSize: key.size,
		PageToken: key.token, IncludeBlocks: true}, grpc.ForceCodecV2(raw)); err != nil {
		return nil, err
	}
	return raw.bytes, nil
}

// nextPageTokenField is ListStatusResponse.next_page_token's number.
var nextPageTokenField = (&api.ListStatusResponse{}).ProtoReflect().Descriptor().Fields().ByName("next_page_token").Number()

// nextPageToken reads the next page's token from a listing page's bytes
// without decoding its files ("" when the page is the last, or unreadable:
// the plugin decodes it and sees).
func nextPageToken(raw []byte) string {
	next := ""
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return ""
		}
		raw = raw[n:]
		if num == nextPageTokenField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(raw)
			if m < 0 {
				return ""
			}
			next = string(v) // the last one wins, as in a decode
			raw = raw[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, raw)
		if m < 0 {
			return ""
		}
		raw = raw[m:]
	}
	return next
}

// pagesAhead are the listing pages a plugin's host asked the FS master for
// before the plugin asked: the page after each one a plugin lists, so the
// FS master lists it while the plugin plans the last (a planner lists a
// page a Plan call, one call after another). A page is handed only to a
// request for the same path, page token, size and user — whatever the
// call or process of the plugin asks — and only once; one not asked for
// within pageAheadTTL is dropped. Shared by a plugin's processes.
type pagesAhead struct {
	mu    sync.Mutex
	pages map[pageKey]*pageAhead
}

// pageKey is what a listing page is asked with.
type pageKey struct {
	user, path, token string
	size              int32
	recursive         bool
}

type pageAhead struct {
	at     time.Time
	done   chan struct{}
	raw    []byte
	err    error
	cancel context.CancelFunc
}

const (
	pageAheadTTL  = 30 * time.Second
	maxPagesAhead = 16
)

// ask lists key's page in the background, acting as ctx's user (its
// values, not its end: the call that asked may end first).
func (pa *pagesAhead) ask(ctx context.Context, env plans.Env, key pageKey) {
	if pa == nil {
		return
	}
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.pages == nil {
		pa.pages = map[pageKey]*pageAhead{}
	}
	if _, ok := pa.pages[key]; ok {
		return
	}
	now := time.Now()
	for k, a := range pa.pages {
		if now.Sub(a.at) > pageAheadTTL || len(pa.pages) >= maxPagesAhead {
			a.cancel()
			delete(pa.pages, k)
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pageAheadTTL)
	a := &pageAhead{at: now, done: make(chan struct{}), cancel: cancel}
	pa.pages[key] = a
	go func() {
		defer close(a.done)
		a.raw, a.err = listRaw(actx, env, key)
	}()
}

// take hands out key's page asked for ahead, waiting for it while ctx
// lasts; nil when none was asked for (or it failed: the caller lists it
// itself, and sees the error first hand).
func (pa *pagesAhead) take(ctx context.Context, key pageKey) ([]byte, error) {
	if pa == nil {
		return nil, nil
	}
	pa.mu.Lock()
	a := pa.pages[key]
	delete(pa.pages, key)
	pa.mu.Unlock()
	if a == nil {
		return nil, nil
	}
	defer a.cancel()
	select {
	case <-a.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if a.err != nil || time.Since(a.at) > pageAheadTTL {
		return nil, nil
	}
	return a.raw, nil
}

// rawListing is the codec of one ListStatus call that keeps the reply's
// bytes instead of decoding them (the request is encoded as usual).
type rawListing struct {
	fallback encoding.CodecV2
	bytes    []byte
}

func (c *rawListing) Name() string { return "proto" }

func (c *rawListing) Marshal(v any) (mem.BufferSlice, error) { return c.fallback.Marshal(v) }

func (c *rawListing) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*api.ListStatusResponse); ok {
		c.bytes = data.Materialize() // a copy: gRPC reuses data's buffers
		return nil
	}
	return c.fallback.Unmarshal(data, v)
}

func (h *hostServer) CheckAccess(in context.Context, req *api.HostAccessRequest) (*api.HostAccessResponse, error) {
	c, ctx, cancel, err := h.as(in)
	if err != nil {
		return nil, err
	}
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	if _, err := c.env.FS().CheckAccess(ctx, &api.CheckAccessRequest{Path: p, Bits: req.GetBits() & 7, Recursive: req.GetRecursive()}); err != nil && status.Code(err) != codes.Unimplemented {
		return nil, err
	}
	return &api.HostAccessResponse{}, nil
}

func (h *hostServer) Delete(in context.Context, req *api.HostDeleteRequest) (*api.HostDeleteResponse, error) {
	c, ctx, cancel, err := h.as(in)
	if err != nil {
		return nil, err
	}
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	if _, err := c.env.FS().Delete(ctx, &api.DeleteRequest{Path: p, Recursive: req.GetRecursive()}); err != nil {
		return nil, err
	}
	return &api.HostDeleteResponse{}, nil
}

func (h *hostServer) Progress(in context.Context, req *api.HostProgressRequest) (*api.HostProgressResponse, error) {
	c, err := h.call(in)
	if err != nil {
		return nil, err
	}
	if c.progress != nil {
		c.progress(req.GetBytesDone())
	}
	return &api.HostProgressResponse{}, nil
}

func (c *hostCall) files() (plans.Files, error) {
	f, ok := c.env.(plans.Files)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this process does not read or write files for plugins")
	}
	return f, nil
}

func (h *hostServer) ReadFile(req *api.HostReadRequest, s api.PlanHost_ReadFileServer) error {
	c, ctx, cancel, err := h.as(s.Context())
	if err != nil {
		return err
	}
	defer cancel()
	files, err := c.files()
	if err != nil {
		return err
	}
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return err
	}
	r, err := files.OpenFile(ctx, p)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, readChunk)
	sent := false
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || !sent {
			if serr := s.Send(&api.HostReadResponse{Chunk: buf[:n]}); serr != nil {
				return serr
			}
			sent = true
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (h *hostServer) WriteFile(s api.PlanHost_WriteFileServer) error {
	c, ctx, cancel, err := h.as(s.Context())
	if err != nil {
		return err
	}
	defer cancel()
	files, err := c.files()
	if err != nil {
		return err
	}
	first, err := s.Recv()
	if err != nil {
		return err
	}
	p, err := cleanPath(first.GetPath())
	if err != nil {
		return err
	}
	w, err := files.CreateFile(ctx, p, first.GetOverwrite())
	if err != nil {
		return err
	}
	abort := func() {
		if a, ok := w.(interface{ Abort() }); ok {
			a.Abort()
		} else {
			_ = w.Close()
		}
	}
	n := int64(0)
	write := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		k, err := w.Write(b)
		n += int64(k)
		return err
	}
	if err := write(first.GetChunk()); err != nil {
		abort()
		return err
	}
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break // the plugin closed the file: complete it
		}
		if err != nil {
			abort() // the plugin went away mid-file: nothing appears
			return err
		}
		if err := write(m.GetChunk()); err != nil {
			abort()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return s.SendAndClose(&api.HostWriteResponse{Bytes: n})
}
