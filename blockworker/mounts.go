package blockworker

import (
	"context"
	"strings"
	"sync"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// mountTable caches the FS master's mount table and one open
// ufs.FileSystem per mount id. An unknown id refreshes the table once.
type mountTable struct {
	fsm     api.FileSystemMasterClient
	open    func(ctx context.Context, uri string, opts map[string]string) (ufs.FileSystem, error)
	mu      sync.Mutex
	byID    map[int64]*mountEntry
	refresh singleflight.Group
}

type mountEntry struct {
	info *api.MountPointInfo
	mu   sync.Mutex
	fs   ufs.FileSystem
}

func newMountTable(fsm api.FileSystemMasterClient) *mountTable {
	return &mountTable{fsm: fsm, open: ufs.Open, byID: map[int64]*mountEntry{}}
}

func (m *mountTable) reload(ctx context.Context) error {
	_, err, _ := m.refresh.Do("", func() (any, error) {
		resp, err := m.fsm.GetMountTable(ctx, &api.GetMountTableRequest{})
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		seen := map[int64]bool{}
		for _, mp := range resp.GetMounts() {
			seen[mp.GetMountId()] = true
			if e := m.byID[mp.GetMountId()]; e != nil && e.info.GetUfsUri() == mp.GetUfsUri() {
				continue
			}
			if old := m.byID[mp.GetMountId()]; old != nil {
				old.close()
			}
			m.byID[mp.GetMountId()] = &mountEntry{info: mp}
		}
		for id, e := range m.byID {
			if !seen[id] {
				e.close()
				delete(m.byID, id)
			}
		}
		return nil, nil
	})
	if err != nil {
		return status.Errorf(status.Code(err), "fetch the mount table from the FS master: %v", err)
	}
	return nil
}

func (e *mountEntry) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fs != nil {
		e.fs.Close()
		e.fs = nil
	}
}

// find returns the entry of mountID, or (mountID 0) of the mount whose URI
// is the longest prefix of uri.
func (m *mountTable) find(mountID int64, uri string) *mountEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mountID != 0 {
		return m.byID[mountID]
	}
	var best *mountEntry
	for _, e := range m.byID {
		if _, ok := relUnder(e.info.GetUfsUri(), uri); ok {
			if best == nil || len(e.info.GetUfsUri()) > len(best.info.GetUfsUri()) {
				best = e
			}
		}
	}
	return best
}

// relUnder returns uri relative to the mount root, when it is below it.
func relUnder(root, uri string) (string, bool) {
	root = strings.TrimRight(root, "/")
	// No root+"/" built: every block cached from the UFS resolves its path.
	switch {
	case uri == root:
		return "", true
	case len(uri) > len(root) && uri[len(root)] == '/' && strings.HasPrefix(uri, root):
		return uri[len(root)+1:], true
	}
	return "", false
}

// resolve returns the file system of a mount and the path of uri inside it.
func (m *mountTable) resolve(ctx context.Context, mountID int64, uri string) (ufs.FileSystem, string, error) {
	e := m.find(mountID, uri)
	if e == nil {
		if err := m.reload(ctx); err != nil {
			return nil, "", err
		}
		if e = m.find(mountID, uri); e == nil {
			if mountID != 0 {
				return nil, "", status.Errorf(codes.NotFound, "ufs %s: mount id %d is unknown to the FS master (unmounted?)", uri, mountID)
			}
			return nil, "", status.Errorf(codes.NotFound, "ufs %s: no mount covers this URI", uri)
		}
	}
	rel, ok := relUnder(e.info.GetUfsUri(), uri)
	if !ok {
		return nil, "", status.Errorf(codes.InvalidArgument, "ufs %s: not under mount %d (%s)", uri, e.info.GetMountId(), e.info.GetUfsUri())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fs == nil {
		fs, err := m.open(ctx, e.info.GetUfsUri(), e.info.GetOptions())
		if err != nil {
			return nil, "", status.Errorf(codes.Unavailable, "ufs %s: %v", uri, err)
		}
		e.fs = fs
	}
	return e.fs, rel, nil
}

// close closes every open file system.
func (m *mountTable) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.byID {
		e.close()
	}
}
