package console

import (
	"mime"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/alluvium/alluvium/internal/fileview"
	"github.com/alluvium/alluvium/sdk"
)

const (
	defFilesPage = 200
	maxFilesPage = 1000
)

// listed is a directory's child as the browse page lists it: without its
// blocks (the file's own page has them, with their locations).
func listed(i *sdk.FileInfo) fileview.File {
	f := fileview.FromInfo(i)
	f.Blocks = nil
	return f
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
		Info     fileview.File   `json:"info"`
		Children []fileview.File `json:"children"`
		Next     string          `json:"next,omitempty"`
	}{Info: fileview.FromInfo(info), Children: []fileview.File{}}
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
			out.Children = append(out.Children, listed(ch))
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
