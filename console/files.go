package console

import (
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

const (
	defFilesPage = 200
	maxFilesPage = 1000
)

// fileView is a file or directory as the browse page shows it.
type fileView struct {
	Path            string      `json:"path"`
	Name            string      `json:"name"`
	IsDir           bool        `json:"isDir"`
	Length          int64       `json:"length"`
	BlockSize       int64       `json:"blockSize,omitempty"`
	Persistence     string      `json:"persistence"`
	Persisted       bool        `json:"persisted"`
	CachedPercent   int32       `json:"cachedPercent"`
	InMemoryPercent int32       `json:"inMemoryPercent"`
	Owner           string      `json:"owner"`
	Group           string      `json:"group"`
	Mode            string      `json:"mode"`
	ModifiedMs      int64       `json:"modifiedMs"`
	MountPoint      bool        `json:"mountPoint,omitempty"`
	Pinned          bool        `json:"pinned,omitempty"`
	Completed       bool        `json:"completed"`
	UFSPath         string      `json:"ufsPath,omitempty"`
	Blocks          []blockView `json:"blocks,omitempty"`
}

type blockView struct {
	ID        int64          `json:"id"`
	Index     int64          `json:"index"`
	Offset    int64          `json:"offset"`
	Length    int64          `json:"length"`
	Locations []locationView `json:"locations"`
}

type locationView struct {
	WorkerID int64  `json:"workerId"`
	Address  string `json:"address"`
	Tier     string `json:"tier"`
}

func toFileView(i *sdk.FileInfo) fileView {
	v := fileView{
		Path: i.GetPath(), Name: i.GetName(), IsDir: i.GetFolder(), Length: i.GetLength(), BlockSize: i.GetBlockSizeBytes(),
		Persistence: strings.TrimPrefix(i.GetPersistenceState().String(), "PERSISTENCE_"), Persisted: i.GetPersistenceState() == api.PersistenceState_PERSISTED,
		CachedPercent: i.GetCachedPercent(), InMemoryPercent: i.GetInMemoryPercent(), Owner: i.GetOwner(), Group: i.GetGroup(),
		Mode: modeString(i.GetFolder(), i.GetMode()), ModifiedMs: i.GetLastModificationTimeMs(), MountPoint: i.GetMountPoint(),
		Pinned: i.GetPinned(), Completed: i.GetCompleted(), UFSPath: i.GetUfsPath(),
	}
	if v.Name == "" {
		v.Name = path.Base(v.Path)
	}
	for _, fb := range i.GetFileBlockInfos() {
		b := fb.GetBlockInfo()
		bv := blockView{ID: b.GetBlockId(), Index: api.BlockIndex(b.GetBlockId()), Offset: fb.GetOffset(), Length: b.GetLength(), Locations: []locationView{}}
		for _, l := range b.GetLocations() {
			bv.Locations = append(bv.Locations, locationView{
				WorkerID: l.GetWorkerId(), Address: hostPort(l.GetAddress().GetHost(), l.GetAddress().GetRpcPort()), Tier: l.GetTier(),
			})
		}
		v.Blocks = append(v.Blocks, bv)
	}
	return v
}

// modeString renders POSIX mode bits as ls does (drwxr-xr-x).
func modeString(dir bool, mode uint32) string {
	b := []byte("-rwxrwxrwx")
	if dir {
		b[0] = 'd'
	}
	for i := 0; i < 9; i++ {
		if mode&(1<<uint(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	return string(b)
}

// GET /ui/api/files?path=P&after=NAME&size=N: P's status (a file's with
// its blocks and their locations) and, for a directory, one page of its
// children in name order after NAME.
func (c *Console) apiFiles(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	q := r.URL.Query()
	p := q.Get("path")
	if p == "" {
		p = "/"
	}
	size := defFilesPage
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxFilesPage {
			badRequest(w, "size %q: want 1..%d", v, maxFilesPage)
			return
		}
		size = n
	}
	info, err := c.c.Stat(ctx, p)
	if err != nil {
		writeError(w, err)
		return
	}
	out := struct {
		Info     fileView   `json:"info"`
		Children []fileView `json:"children"`
		Next     string     `json:"next,omitempty"`
	}{Info: toFileView(info), Children: []fileView{}}
	if info.GetFolder() {
		n := 0
		for ch, err := range c.c.ListFrom(ctx, p, sdk.ListFromOptions{After: q.Get("after"), PageSize: int32(size + 1)}) {
			if err != nil {
				writeError(w, err)
				return
			}
			if n == size {
				out.Next = out.Children[len(out.Children)-1].Name
				break
			}
			out.Children = append(out.Children, toFileView(ch))
			n++
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /ui/api/download?path=P: the file's bytes, read as the user reads
// them (cache first, the UFS on a miss), with ranges.
func (c *Console) apiDownload(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	p := r.URL.Query().Get("path")
	if p == "" {
		badRequest(w, "path: missing")
		return
	}
	f, err := c.c.Open(ctx, p, sdk.OpenOptions{})
	if err != nil {
		writeError(w, err)
		return
	}
	defer f.Close()
	info := f.Info()
	name := path.Base(info.GetPath())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	http.ServeContent(w, r, name, time.UnixMilli(info.GetLastModificationTimeMs()), f)
}
