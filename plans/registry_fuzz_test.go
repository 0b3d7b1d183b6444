package plans

import (
	"context"
	"net"
	"reflect"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// fuzzMaster is an FS master and block master over gRPC for validating
// configs: a small fixed tree, one mount, two live workers; every call a
// plan's Validate should not make (writes) answers Unimplemented. It only
// reads, so validating the same config twice sees the same cluster.
type fuzzMaster struct {
	api.UnimplementedFileSystemMasterServer
	api.UnimplementedBlockMasterServer
	nodes map[string]*api.FileInfo
}

func newFuzzMaster() *fuzzMaster {
	m := &fuzzMaster{nodes: map[string]*api.FileInfo{}}
	dir := func(p string, id int64) {
		_, name := splitPath(p)
		m.nodes[p] = &api.FileInfo{Path: p, Name: name, FileId: id, Folder: true, Completed: true, MountId: 1,
			PersistenceState: api.PersistenceState_PERSISTED, UfsPath: "file:///ufs" + p, Mode: 0o755}
	}
	file := func(p string, id, n int64, persisted bool) {
		_, name := splitPath(p)
		fi := &api.FileInfo{Path: p, Name: name, FileId: id, Length: n, BlockSizeBytes: 1 << 20, Completed: true, MountId: 1,
			UfsPath: "file:///ufs" + p, UfsFingerprint: "fp", Mode: 0o644, PersistenceState: api.PersistenceState_NOT_PERSISTED}
		if persisted {
			fi.PersistenceState = api.PersistenceState_PERSISTED
		}
		for i := int64(0); i<<20 < n; i++ {
			fi.BlockIds = append(fi.BlockIds, api.BlockID(id, i))
		}
		m.nodes[p] = fi
	}
	dir("/", 0)
	dir("/data", 1)
	dir("/dst", 2)
	dir("/data/sub", 3)
	file("/data/f", 4, 3<<20+5, true)
	file("/data/cached", 5, 100, false)
	file("/data/sub/g", 6, 0, true)
	return m
}

func splitPath(p string) (string, string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}

func (m *fuzzMaster) GetStatus(_ context.Context, req *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	fi, ok := m.nodes[req.GetPath()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "stat %s: no such file or directory", req.GetPath())
	}
	return &api.GetStatusResponse{Info: fi}, nil
}

func (m *fuzzMaster) ListStatus(_ context.Context, req *api.ListStatusRequest) (*api.ListStatusResponse, error) {
	if _, ok := m.nodes[req.GetPath()]; !ok {
		return nil, status.Errorf(codes.NotFound, "ls %s: no such file or directory", req.GetPath())
	}
	resp := &api.ListStatusResponse{}
	for p, fi := range m.nodes {
		if p == "/" || p == req.GetPath() {
			continue
		}
		d, _ := splitPath(p)
		if d == req.GetPath() || req.GetRecursive() && strings.HasPrefix(p, strings.TrimSuffix(req.GetPath(), "/")+"/") {
			resp.Infos = append(resp.Infos, fi)
		}
	}
	// One page: names sort like pre-order here (no name is a prefix of a
	// sibling's with a byte below '/').
	sort.Slice(resp.Infos, func(i, j int) bool { return resp.Infos[i].GetPath() < resp.Infos[j].GetPath() })
	return resp, nil
}

func (m *fuzzMaster) GetMountTable(context.Context, *api.GetMountTableRequest) (*api.GetMountTableResponse, error) {
	return &api.GetMountTableResponse{Mounts: []*api.MountPointInfo{{AlluviumPath: "/", UfsUri: "file:///ufs", MountId: 1}}}, nil
}

func (m *fuzzMaster) GetWorkerInfoList(context.Context, *api.GetWorkerInfoListRequest) (*api.GetWorkerInfoListResponse, error) {
	var ws []*api.WorkerInfo
	for i := int64(1); i <= 2; i++ {
		ws = append(ws, &api.WorkerInfo{Id: i, State: api.WorkerState_LIVE, Address: &api.WorkerNetAddress{Host: "h" + string(rune('0'+i)), RpcPort: 29999}})
	}
	return &api.GetWorkerInfoListResponse{Workers: ws}, nil
}

func (m *fuzzMaster) GetBlockInfo(_ context.Context, req *api.GetBlockInfoRequest) (*api.GetBlockInfoResponse, error) {
	return &api.GetBlockInfoResponse{Info: &api.BlockInfo{BlockId: req.GetBlockId()}}, nil
}

// grpcEnv is an Env over real gRPC clients of the fake master.
type grpcEnv struct {
	fs api.FileSystemMasterClient
	bm api.BlockMasterClient
}

func (e grpcEnv) FS() api.FileSystemMasterClient     { return e.fs }
func (e grpcEnv) BlockMaster() api.BlockMasterClient { return e.bm }
func (e grpcEnv) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	return nil, status.Errorf(codes.Unavailable, "block worker %s: not in this test", addr)
}

// FuzzValidateConfig: a job's config is JSON from any client. For every
// registered plan, Validate never panics; it refuses bad input with a
// gRPC code a client can act on (never Unknown or Internal: those mean a
// bare Go error or a bug); and a config it accepts is normalized — it
// validates again to the very same bytes.
func FuzzValidateConfig(f *testing.F) {
	m := newFuzzMaster()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterFileSystemMasterServer(srv, m)
	api.RegisterBlockMasterServer(srv, m)
	go srv.Serve(ln)
	f.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	env := grpcEnv{fs: api.NewFileSystemMasterClient(cc), bm: api.NewBlockMasterClient(cc)}
	names := Names()
	for i, s := range []string{
		`{"path":"/data"}`, `{"path":"/data/f","replication":2,"verify":true}`, `{"path":"/nope"}`,
		`{"src":"/data","dst":"/dst/x"}`, `{"src":"/data/f","dst":"/dst","overwrite":true}`, `{"src":"/data","dst":"/data/sub/in"}`,
		`{"path":"/data","replicas":2}`, `{"path":"/data","min":1,"max":2}`, `{`, `null`, `[]`, `{"path":"/a/../../data"}`,
		`{"src":"/","dst":"/"}`, `{"path":"/data"} {}`, `{"path":"/data","bandwidth":-1}`,
	} {
		for j := range names {
			f.Add(uint8(i+j), []byte(s))
		}
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, which uint8, cfg []byte) {
		name := names[int(which)%len(names)]
		p, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := p.Validate(ctx, env, cfg)
		if err != nil {
			if c := status.Code(err); c == codes.Unknown || c == codes.Internal {
				t.Fatalf("%s %q: error with code %s: %v", name, cfg, c, err)
			}
			return
		}
		out := v.Config
		again, err := p.Validate(ctx, env, out)
		if err != nil {
			t.Fatalf("%s: normalized config %s of %q does not validate: %v", name, out, cfg, err)
		}
		if string(again.Config) != string(out) {
			t.Fatalf("%s: normalized config is not stable: %q -> %s -> %s", name, cfg, out, again.Config)
		}
		if !reflect.DeepEqual(again.Limits, v.Limits) {
			t.Fatalf("%s: limits are not stable: %q -> %+v -> %+v", name, cfg, v.Limits, again.Limits)
		}
	})
}
