package plugin

import (
	"context"
	"errors"
	"io"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans"
)

// The task-scoped client. For each call to a plugin, the caller serves
// PlanHost on a new go-plugin broker stream and passes its id in the call;
// the plugin dials it back. The server lives only until the call returns,
// and every one of its calls acts for the user of the call's context (the
// job's user, rpc.ActAs) through this process's client: the plugin gets
// what that user may do, and only the few calls a plan needs — never the
// token, never a connection of its own to the cluster.

// readChunk is how many bytes one ReadFile message carries.
const readChunk = 1 << 20

// maxListPage bounds a List page.
const maxListPage = 10000

// serveHost serves a PlanHost for ctx's user on a new broker stream and
// returns its id and the function that stops it.
func serveHost(ctx context.Context, b *goplugin.GRPCBroker, env plans.Env, progress func(int64)) (uint32, func()) {
	h := &hostServer{ctx: ctx, env: env, progress: progress}
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
	return id, func() {
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
	ctx      context.Context // the call's: its user, and its end
	env      plans.Env
	progress func(int64)
}

// as is in's context acting for the call's user: in's cancellation (the
// plugin gave up on the call) and the call's values (rpc.ActAs).
func (h *hostServer) as(in context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(h.ctx))
	stop1 := context.AfterFunc(in, cancel)
	stop2 := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop1(); stop2(); cancel() }
}

func cleanPath(p string) (string, error) {
	c, err := paths.Clean(p)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "%s: %v", p, err)
	}
	return c, nil
}

func (h *hostServer) Stat(in context.Context, req *api.HostStatRequest) (*api.HostStatResponse, error) {
	ctx, cancel := h.as(in)
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	r, err := h.env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: p})
	if err != nil {
		return nil, err
	}
	return &api.HostStatResponse{Info: r.GetInfo()}, nil
}

func (h *hostServer) List(in context.Context, req *api.HostListRequest) (*api.HostListResponse, error) {
	ctx, cancel := h.as(in)
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	size := min(max(req.GetPageSize(), 0), maxListPage)
	r, err := h.env.FS().ListStatus(ctx, &api.ListStatusRequest{Path: p, Recursive: req.GetRecursive(), PageSize: size,
		PageToken: req.GetPageToken(), IncludeBlocks: true})
	if err != nil {
		return nil, err
	}
	return &api.HostListResponse{Files: r.GetInfos(), NextPageToken: r.GetNextPageToken()}, nil
}

func (h *hostServer) CheckAccess(in context.Context, req *api.HostAccessRequest) (*api.HostAccessResponse, error) {
	ctx, cancel := h.as(in)
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	if _, err := h.env.FS().CheckAccess(ctx, &api.CheckAccessRequest{Path: p, Bits: req.GetBits() & 7, Recursive: req.GetRecursive()}); err != nil && status.Code(err) != codes.Unimplemented {
		return nil, err
	}
	return &api.HostAccessResponse{}, nil
}

func (h *hostServer) Delete(in context.Context, req *api.HostDeleteRequest) (*api.HostDeleteResponse, error) {
	ctx, cancel := h.as(in)
	defer cancel()
	p, err := cleanPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	if _, err := h.env.FS().Delete(ctx, &api.DeleteRequest{Path: p, Recursive: req.GetRecursive()}); err != nil {
		return nil, err
	}
	return &api.HostDeleteResponse{}, nil
}

func (h *hostServer) Progress(_ context.Context, req *api.HostProgressRequest) (*api.HostProgressResponse, error) {
	if h.progress != nil {
		h.progress(req.GetBytesDone())
	}
	return &api.HostProgressResponse{}, nil
}

func (h *hostServer) files() (plans.Files, error) {
	f, ok := h.env.(plans.Files)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this process does not read or write files for plugins")
	}
	return f, nil
}

func (h *hostServer) ReadFile(req *api.HostReadRequest, s api.PlanHost_ReadFileServer) error {
	ctx, cancel := h.as(s.Context())
	defer cancel()
	files, err := h.files()
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
	ctx, cancel := h.as(s.Context())
	defer cancel()
	files, err := h.files()
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
