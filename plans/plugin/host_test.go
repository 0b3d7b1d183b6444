package plugin

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/sdk/planplugin"
)

// pagedFS is an FS master that lists pages of one file each (page token:
// the page's number) and records who asked for which page.
type pagedFS struct {
	api.UnimplementedFileSystemMasterServer
	pages int
	mu    sync.Mutex
	asked []string // user/token
}

func (f *pagedFS) ListStatus(ctx context.Context, req *api.ListStatusRequest) (*api.ListStatusResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.asked = append(f.asked, firstOf(md.Get(rpc.UserHeader))+"/"+req.GetPageToken())
	f.mu.Unlock()
	n, _ := strconv.Atoi(req.GetPageToken())
	resp := &api.ListStatusResponse{Infos: []*api.FileInfo{{Path: req.GetPath() + "/f" + strconv.Itoa(n), Length: int64(n)}}}
	if n+1 < f.pages {
		resp.NextPageToken = strconv.Itoa(n + 1)
	}
	return resp, nil
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (f *pagedFS) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

type fsEnv struct{ c api.FileSystemMasterClient }

func (e fsEnv) FS() api.FileSystemMasterClient                    { return e.c }
func (e fsEnv) BlockMaster() api.BlockMasterClient                { return nil }
func (e fsEnv) BlockWorker(string) (api.BlockWorkerClient, error) { return nil, nil }

func (f *pagedFS) serve(t *testing.T) plans.Env {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	api.RegisterFileSystemMasterServer(s, f)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return fsEnv{c: api.NewFileSystemMasterClient(conn)}
}

// A plugin's host lists the page after each one the plugin lists while
// the plugin plans it, and hands it to the request for that page — of the
// same user only; each page reaches the plugin as the FS master sent it.
func TestHostListsThePageAhead(t *testing.T) {
	fs := &pagedFS{pages: 4}
	env := fs.serve(t)
	h := &hostServer{pages: &pagesAhead{}}
	list := func(user, token string) *api.ListStatusResponse {
		t.Helper()
		tok, end := h.begin(rpc.ActAs(context.Background(), user), env, nil)
		defer end()
		in := metadata.NewIncomingContext(context.Background(), metadata.Pairs(planplugin.CallHeader, tok))
		resp, err := h.List(in, &api.HostListRequest{Path: "/d", PageToken: token, PageSize: 1})
		if err != nil {
			t.Fatalf("list %s as %s: %v", token, user, err)
		}
		var page api.ListStatusResponse
		if err := proto.Unmarshal(resp.GetListing(), &page); err != nil {
			t.Fatal(err)
		}
		if got := nextPageToken(resp.GetListing()); got != page.GetNextPageToken() {
			t.Fatalf("nextPageToken %q, the page says %q", got, page.GetNextPageToken())
		}
		return &page
	}
	p := list("alice", "")
	if p.GetInfos()[0].GetPath() != "/d/f0" || p.GetNextPageToken() != "1" {
		t.Fatalf("page 0: %v", p)
	}
	waitFor(t, "page 1 asked for ahead", func() bool { return len(fs.seen()) == 2 })
	if p = list("alice", "1"); p.GetInfos()[0].GetPath() != "/d/f1" {
		t.Fatalf("page 1: %v", p)
	}
	// Page 2 was asked for ahead as alice: bob's request lists it anew.
	waitFor(t, "page 2 asked for ahead", func() bool { return len(fs.seen()) == 3 })
	if p = list("bob", "2"); p.GetInfos()[0].GetPath() != "/d/f2" {
		t.Fatalf("page 2: %v", p)
	}
	// The last page is asked for once (as bob, ahead); nothing after it.
	if p = list("bob", "3"); p.GetInfos()[0].GetPath() != "/d/f3" || p.GetNextPageToken() != "" {
		t.Fatalf("page 3: %v", p)
	}
	want := []string{"alice/", "alice/1", "alice/2", "bob/2", "bob/3"}
	got := fs.seen()
	if len(got) != len(want) {
		t.Fatalf("the FS master was asked %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("the FS master was asked %v, want %v", got, want)
		}
	}
}

func TestNextPageTokenOfBadBytes(t *testing.T) {
	for _, b := range [][]byte{nil, {0xff}, {0x12, 0x05, 'a'}} {
		if got := nextPageToken(b); got != "" {
			t.Errorf("nextPageToken(%x) = %q, want none", b, got)
		}
	}
}
