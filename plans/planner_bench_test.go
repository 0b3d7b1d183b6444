package plans

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans/spec"
)

// The planners' own cost at scale, apart from the FS master's: a listing
// served from memory (recursive pages by token, as fsmaster pages), many
// block workers, a plan planned to the end. Figures: ns and allocations
// per file planned.

type benchFS struct {
	api.FileSystemMasterClient
	root  *api.FileInfo
	infos []*api.FileInfo // pre-order
	at    map[string]int  // path → index in infos
}

func newBenchFS(files int, size, bs int64) *benchFS {
	f := &benchFS{root: &api.FileInfo{Path: "/b", Name: "b", Folder: true}, at: map[string]int{}}
	for i := range files {
		if i%1000 == 0 {
			d := fmt.Sprintf("/b/d%04d", i/1000)
			f.at[d] = len(f.infos)
			f.infos = append(f.infos, &api.FileInfo{Path: d, Name: d[3:], Folder: true})
		}
		id := int64(i + 1)
		p := fmt.Sprintf("/b/d%04d/f%06d", i/1000, i)
		fi := &api.FileInfo{Path: p, Name: p[9:], FileId: id, Length: size, BlockSizeBytes: bs, Completed: true,
			PersistenceState: api.PersistenceState_PERSISTED, UfsPath: "file:///ufs" + p, MountId: 1, UfsFingerprint: "fp",
			LastModificationTimeMs: 1_000_000 + id}
		for j := int64(0); j*bs < size; j++ {
			fi.BlockIds = append(fi.BlockIds, api.BlockID(id, j))
			fi.FileBlockInfos = append(fi.FileBlockInfos, &api.FileBlockInfo{Offset: j * bs,
				BlockInfo: &api.BlockInfo{BlockId: api.BlockID(id, j), Length: min(bs, size-j*bs)}})
		}
		f.at[p] = len(f.infos)
		f.infos = append(f.infos, fi)
	}
	return f
}

func (f *benchFS) GetStatus(_ context.Context, req *api.GetStatusRequest, _ ...grpc.CallOption) (*api.GetStatusResponse, error) {
	if req.GetPath() == f.root.Path {
		return &api.GetStatusResponse{Info: f.root}, nil
	}
	return &api.GetStatusResponse{Info: f.infos[f.at[req.GetPath()]]}, nil
}

func (f *benchFS) ListStatus(_ context.Context, req *api.ListStatusRequest, _ ...grpc.CallOption) (*api.ListStatusResponse, error) {
	i := 0
	if t := req.GetPageToken(); t != "" {
		i = f.at[t] + 1
	}
	end := min(i+int(req.GetPageSize()), len(f.infos))
	resp := &api.ListStatusResponse{Infos: make([]*api.FileInfo, end-i)}
	copy(resp.Infos, f.infos[i:end]) // the walker drops its page's entries
	if end < len(f.infos) {
		resp.NextPageToken = f.infos[end-1].Path
	}
	return resp, nil
}

type benchEnv struct {
	fs *benchFS
	c  *fakeCluster // its workers
}

func (e benchEnv) FS() api.FileSystemMasterClient     { return e.fs }
func (e benchEnv) BlockMaster() api.BlockMasterClient { return fakeBM{c: e.c} }
func (e benchEnv) BlockWorker(string) (api.BlockWorkerClient, error) {
	return nil, fmt.Errorf("no block workers in a planning benchmark")
}

// benchPlan plans p's job over files to the end, b.N times.
func benchPlan(b *testing.B, p Plan, env Env, cfg []byte, files int) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	tasks := 0
	for range b.N {
		pl, err := p.NewPlanner(ctx, env, Job{ID: 1, Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		tasks = 0
		for {
			bt, err := pl.Next(ctx, 1000)
			if err != nil {
				b.Fatal(err)
			}
			tasks += len(bt.Tasks)
			if bt.Done {
				break
			}
		}
		_ = pl.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(files), "ns/file")
	b.ReportMetric(float64(tasks), "tasks")
}

// BenchmarkPlanLoadSmallFiles: 100,000 one-block files over 1,000 workers.
func BenchmarkPlanLoadSmallFiles(b *testing.B) {
	const files = 100_000
	env := benchEnv{fs: newBenchFS(files, 4096, 64<<20), c: newFakeCluster(1000)}
	benchPlan(b, Load{}, env, cfgJSON(b, spec.LoadConfig{Path: "/b"}), files)
}

// BenchmarkPlanLoadBigFiles: 10,000 files of 4 blocks, 2 copies each, over
// 1,000 workers.
func BenchmarkPlanLoadBigFiles(b *testing.B) {
	const files = 10_000
	env := benchEnv{fs: newBenchFS(files, 4<<20, 1<<20), c: newFakeCluster(1000)}
	benchPlan(b, Load{}, env, cfgJSON(b, spec.LoadConfig{Path: "/b", Replication: 2}), files)
}

// BenchmarkPlanExecSmallFiles: the per-file planner spreading 100,000
// uncached files over 1,000 workers.
func BenchmarkPlanExecSmallFiles(b *testing.B) {
	const files = 100_000
	env := benchEnv{fs: newBenchFS(files, 4096, 64<<20), c: newFakeCluster(1000)}
	cfg := []byte(`{"path":"/b","command":["true"]}`)
	benchPlan(b, Exec{}, env, cfg, files)
}
